//! Moving money between two accounts under a multi-lock, with fenced writes.
//!
//! Each account is a lock name. A transfer takes both names at once with
//! `LockClient::multi_lock` (all or nothing, in one global order, so two
//! tellers moving money in opposite directions never deadlock), then writes
//! both balances in one request to the bank, passing each account's own
//! fencing token. The bank keeps, per account, the highest token it has
//! accepted and refuses a write with a lower one: a teller that paused past
//! its leases cannot overwrite the balances written by the teller that took
//! the accounts over.
//!
//! ```text
//! cargo run -p lynk-testkit --example transfer
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lynk_core::{FencingToken, LockClient, LockError, MultiGuard};
use lynk_testkit::{MemoryBackend, TestClock};

#[derive(Debug)]
struct Account {
    balance: i64,
    /// The highest fencing token of this account's lock the bank accepted.
    highest: Option<FencingToken>,
}

/// An in-memory bank: it moves money only for a caller that shows, for each
/// account touched, a fencing token at least as high as any it accepted.
#[derive(Debug, Default)]
struct Bank {
    accounts: Mutex<HashMap<String, Account>>,
}

impl Bank {
    fn open(&self, name: &str, balance: i64) {
        let account = Account {
            balance,
            highest: None,
        };
        self.accounts
            .lock()
            .unwrap()
            .insert(name.to_owned(), account);
    }

    fn balance(&self, name: &str) -> i64 {
        self.accounts.lock().unwrap()[name].balance
    }

    fn total(&self) -> i64 {
        self.accounts
            .lock()
            .unwrap()
            .values()
            .map(|a| a.balance)
            .sum()
    }

    /// Moves `amount` from `from` to `to` in one step, if both tokens are
    /// current and `from` has the money.
    fn transfer(
        &self,
        (from, from_token): (&str, FencingToken),
        (to, to_token): (&str, FencingToken),
        amount: i64,
    ) -> Result<(), String> {
        let mut accounts = self.accounts.lock().unwrap();
        for (name, token) in [(from, from_token), (to, to_token)] {
            let account = accounts.get(name).ok_or(format!("no account {name}"))?;
            if let Some(highest) = account.highest.filter(|h| token < *h) {
                return Err(format!(
                    "refused: token {token} for {name} is stale (the bank has seen {highest})"
                ));
            }
        }
        if accounts[from].balance < amount {
            return Err(format!("refused: {from} has less than {amount}"));
        }
        for (name, token, delta) in [(from, from_token, -amount), (to, to_token, amount)] {
            let account = accounts.get_mut(name).expect("checked above");
            account.balance += delta;
            account.highest = Some(token);
        }
        Ok(())
    }
}

/// The fenced write of one transfer, with the tokens of the guard's locks.
fn transfer_under(
    guard: &MultiGuard,
    bank: &Bank,
    from: &str,
    to: &str,
    amount: i64,
) -> Result<(), String> {
    let token = |name| {
        guard
            .fencing_token(name)
            .expect("the guard holds both accounts")
    };
    bank.transfer((from, token(from)), (to, token(to)), amount)
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), LockError> {
    let backend = MemoryBackend::new();
    let clock = TestClock::new();
    let bank = Arc::new(Bank::default());
    bank.open("alice", 1_000);
    bank.open("bob", 1_000);
    let teller = |host: &str| {
        LockClient::builder(backend.clone())
            .clock(clock.clone())
            .host_identifier(host)
            .default_lease(Duration::from_secs(10))
            .build()
    };
    let (one, two) = (teller("teller-1")?, teller("teller-2")?);

    // 1. Two tellers move money in opposite directions, 50 times each, at
    //    the same time. Each names the accounts in its own order; the
    //    multi-lock takes them in one order, so neither waits for the other
    //    in a cycle.
    let mut tellers = Vec::new();
    for (client, from, to, amount) in [
        (one.clone(), "alice", "bob", 7),
        (two.clone(), "bob", "alice", 5),
    ] {
        let bank = bank.clone();
        let clock = clock.clone();
        tellers.push(tokio::spawn(async move {
            for _ in 0..50 {
                let guard = client.multi_lock([from, to]).acquire().await?;
                guard
                    .run(async {
                        transfer_under(&guard, &bank, from, to, amount)
                            .expect("both tokens are current");
                        lynk_core::Clock::sleep(&clock, Duration::from_millis(20)).await;
                        // the rest of the work
                    })
                    .await?;
                guard.release().await?;
            }
            Ok::<_, LockError>(())
        }));
    }
    for teller in tellers {
        teller.await.expect("teller panicked")?;
    }
    println!(
        "after 100 transfers: alice {}, bob {} (total {})",
        bank.balance("alice"),
        bank.balance("bob"),
        bank.total()
    );
    assert_eq!(bank.balance("alice"), 1_000 - 50 * 7 + 50 * 5);
    assert_eq!(bank.total(), 2_000, "no money made or lost");

    // 2. Teller 1 takes both accounts, then its process pauses past the
    //    leases (simulated: its heartbeats stop, the records stay as they
    //    were). Teller 2 takes both accounts over and moves money.
    let stale = one.multi_lock(["alice", "bob"]).acquire().await?;
    let records: Vec<_> = stale
        .names()
        .map(|n| backend.get(n).expect("record"))
        .collect();
    drop(one.shutdown().await);
    for record in records {
        backend.put_raw(record);
    }
    let fresh = two.multi_lock(["bob", "alice"]).acquire().await?; // after the leases ran out
    for (name, token) in fresh.tokens() {
        println!(
            "teller-2 took {name} over with token {token} (teller-1 had {})",
            stale.fencing_token(name).expect("held")
        );
    }
    transfer_under(&fresh, &bank, "alice", "bob", 100).expect("teller-2 holds both accounts");

    // 3. Teller 1 wakes up and, not having checked its lost signal, writes
    //    with its old tokens: the bank refuses.
    match transfer_under(&stale, &bank, "bob", "alice", 500) {
        Err(e) => println!("teller-1's late transfer: {e}"),
        Ok(()) => panic!("a stale transfer was accepted"),
    }
    assert!(
        stale.is_lost(),
        "teller-1's guard knows it lost the accounts"
    );
    println!(
        "teller-1's guard says: {}",
        stale.run(async {}).await.expect_err("lost")
    );
    assert_eq!((bank.balance("alice"), bank.balance("bob")), (800, 1_200));
    drop(stale);
    fresh.release().await
}
