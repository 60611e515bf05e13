//! Command-line definitions: the commands and their options. The values are
//! checked by the parsers of [`crate::parse`] before anything is sent.

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::parse::{
    parse_lease, parse_lock_name, parse_permits, parse_poll, parse_table_name, parse_wait,
};

const TOP_EXAMPLES: &str = "\
Examples:
  lynk create-table my-locks                   # a lock table (tagged lynk=lock-table)
  lynk list-tables
  lynk run my-locks nightly --wait 5m -- ./migrate.sh
  lynk run my-locks encoders --permits 3 -- ./encode.sh   # at most 3 at once
  lynk run my-locks account/a account/b -- ./transfer.sh  # both locks, all or nothing
  lynk leader run my-locks scheduler --payload \"$(hostname)\" -- ./schedule.sh
  lynk leader show my-locks scheduler
  lynk locks my-locks                          # who holds what
  lynk locks app-table --group orders --layout-file lynk.toml  # locks in a table of yours
  lynk demo                                    # the original quickstart, in memory, no AWS needed

AWS configuration (credentials, region, endpoint) comes from the standard chain
(AWS_REGION, AWS_PROFILE, ~/.aws/config, AWS_ENDPOINT_URL, SSO, roles), overridden
by --region, --profile and --endpoint-url.

Exit codes: 0 ok, 1 other failure, 2 usage or invalid input, 3 lock not granted,
4 lease lost or lock no longer held, 5 AWS unreachable/throttled, 6 AWS configuration,
credentials or permissions, 7 table missing or unusable, 8 cancelled by the operator;
`lynk run` and `lynk leader run` otherwise exit with the command's own code. See docs/cli.md.";

/// lynk: distributed locks kept in DynamoDB.
#[derive(Debug, Parser)]
#[command(
    name = "lynk",
    version,
    about = "Distributed locks kept in Amazon DynamoDB",
    after_help = TOP_EXAMPLES
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How commands print their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable lines (the original lynk's output where it had one).
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Options that apply to every command.
#[derive(Debug, Args)]
pub struct Global {
    /// AWS region (default: AWS_REGION or your profile's region).
    #[arg(
        long,
        global = true,
        value_name = "REGION",
        help_heading = "Global options"
    )]
    pub region: Option<String>,
    /// Send requests to this endpoint (e.g. http://127.0.0.1:8000 for a local server).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub endpoint_url: Option<String>,
    /// Named profile of ~/.aws/config and ~/.aws/credentials.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Global options"
    )]
    pub profile: Option<String>,
    /// Output format of commands that print data.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = OutputFormat::Text,
        help_heading = "Global options"
    )]
    pub output: OutputFormat,
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    pub quiet: bool,
    /// A label written with the locks this command takes, after its process
    /// id, so holders on one host can be told apart (`describe`, `locks`).
    #[arg(
        long,
        global = true,
        env = "LYNK_LABEL",
        value_name = "LABEL",
        help_heading = "Global options"
    )]
    pub label: Option<String>,
    /// Where the locks live in the table.
    #[command(flatten)]
    pub layout: LayoutArgs,
}

/// The table layout options: for locks in a table whose keys you chose. Each
/// also from an environment variable, else from the layout file; see
/// docs/cli.md, "Table layout".
#[derive(Debug, Args, Default, Clone)]
pub struct LayoutArgs {
    /// A file of layout settings (`partition_key = "PK"`, ...; env LYNK_LAYOUT_FILE).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub layout_file: Option<std::path::PathBuf>,
    /// The partition key attribute (default lockKey; env LYNK_PARTITION_KEY).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub partition_key: Option<String>,
    /// Written before the lock name (or group) in the partition key, e.g. LOCK# (env LYNK_KEY_PREFIX).
    #[arg(
        long,
        global = true,
        value_name = "PREFIX",
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub key_prefix: Option<String>,
    /// The sort key attribute, if the table has one; with --sort-key-value or --grouped (env LYNK_SORT_KEY).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub sort_key: Option<String>,
    /// Every lock item's sort key holds VALUE; the name is in the partition key (env LYNK_SORT_KEY_VALUE).
    #[arg(
        long,
        global = true,
        value_name = "VALUE",
        conflicts_with = "grouped",
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub sort_key_value: Option<String>,
    /// Lock GROUP/NAME: GROUP in the partition key, NAME in the sort key (env LYNK_GROUPED=true).
    #[arg(
        long,
        global = true,
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub grouped: bool,
    /// With --grouped: what separates the group from the name (default /; env LYNK_GROUP_SEPARATOR).
    #[arg(
        long,
        global = true,
        value_name = "SEP",
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub group_separator: Option<String>,
    /// Rename one of lynk's attributes, e.g. payload=lockPayload; repeatable (env LYNK_ATTRIBUTES=a=b,c=d).
    #[arg(
        long = "attribute",
        global = true,
        value_name = "LYNK=NAME",
        value_parser = parse_rename_arg,
        help_heading = "Table layout (flag > env LYNK_... > --layout-file > default)"
    )]
    pub attributes: Vec<(String, String)>,
}

fn parse_rename_arg(text: &str) -> Result<(String, String), String> {
    crate::layout::parse_rename(text)
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a lock table (hash key lockKey, tagged lynk=lock-table).
    #[command(after_help = "\
Prints `Creating table NAME` then `Created`, or `Table NAME already exists.` (exit 0),
as the original lynk did. On-demand billing and TTL on `expiresAt` by default.

Examples:
  lynk create-table my-locks
  lynk create-table my-locks --billing provisioned --read-capacity 5 --write-capacity 5
  lynk create-table my-locks --no-wait --output json")]
    CreateTable(CreateTableArgs),
    /// List the lock tables (those tagged lynk=lock-table), one per line.
    #[command(after_help = "\
Prints nothing when there are none.

Examples:
  lynk list-tables
  lynk list-tables --prefix team-a-
  lynk list-tables --output json | jq -r '.tables[]'")]
    ListTables(ListTablesArgs),
    /// Delete a lock table and every lock in it.
    #[command(after_help = "\
Prints `Deleting table NAME` then `Deleted`, or `Table NAME does not exist.` (exit 0).
Refuses a table lynk did not create (no lynk=lock-table tag) unless --force.

Examples:
  lynk delete-table my-locks
  lynk delete-table old-table-made-by-hand --force")]
    DeleteTable(DeleteTableArgs),
    /// Check that a table exists and can hold lynk locks, and describe it.
    #[command(after_help = "\
Exits 7 if the table is missing or has the wrong key schema, saying how to fix it.

Examples:
  lynk check-table my-locks
  lynk check-table my-locks --output json")]
    CheckTable(TableArg),
    /// List the locks in a table: holder, lease, fencing token, payload size.
    #[command(after_help = "\
Reads the whole table (a consistent scan), so it costs one read unit per 4 KB.

Examples:
  lynk locks my-locks
  lynk locks my-locks --output json | jq '.locks[] | select(.state == \"held\")'
  lynk locks app-table --group orders --partition-key PK --sort-key SK --grouped")]
    Locks(LocksArgs),
    /// Show one lock's record: holder, lease, fencing token, version, payload.
    #[command(after_help = "\
A lock with no record is free (exit 0, `exists: false` in JSON).

With --watch, follows the record (one read per second) until interrupted (exit 0):
a line whenever its version, holder or state changes, and when a holder's record has
stood unchanged for longer than its lease (a waiter may then take it over), measured
by this process since it first read that version, never by comparing clocks.

Examples:
  lynk describe my-locks nightly
  lynk describe my-locks 'my lock' --output json
  lynk describe my-locks nightly --watch")]
    Describe(DescribeArgs),
    /// Run a command while holding a lock, a semaphore permit, or several locks.
    #[command(after_help = "\
Acquires the lock (waiting up to --wait; forever if not given), runs COMMAND with
LYNK_FENCING_TOKEN, LYNK_LOCK_NAME and LYNK_TABLE in its environment while heartbeating
the lease, releases the lock when it exits, and exits with its exit code (128+N if it
was killed by signal N). SIGTERM and SIGHUP sent to lynk are passed on to the command.

With --permits N, NAME is a counting semaphore: at most N commands hold one of its N
permits at once (every user must give the same N). LYNK_FENCING_TOKEN is the permit's.
With several names, all the locks are taken (in byte order) or none; the command gets
LYNK_FENCING_TOKENS=\"a=5,b=9\" (name=token, in the order given) and LYNK_LOCK_NAMES.

If the lock is not granted within --wait: exit 3, the command is not run.
If the lease is lost (taken over, released by an operator, store unreachable): the
command gets SIGTERM, then SIGKILL after --grace; exit 4.
If the command cannot be started: exit 127 (not found) or 126 (not executable).
Bad inputs (--permits 0 or above 100, a name given twice, more than 100 names, a
permit count other than the stored one): exit 2.

Examples:
  lynk run my-locks nightly -- ./migrate.sh --all
  lynk run my-locks nightly --wait 0 -- ./job.sh        # skip if someone else runs it
  lynk run my-locks leader --lease 30s --grace 5s -- sh -c 'exec ./serve --token \"$LYNK_FENCING_TOKEN\"'
  lynk run my-locks encoders --permits 4 -- ./encode.sh  # at most 4 at once, across machines
  lynk run my-locks account/alice account/bob -- sh -c 'echo \"$LYNK_FENCING_TOKENS\"'")]
    Run(RunArgs),
    /// Leader election for scripts: run a command while leader, show or follow the leader.
    #[command(
        subcommand,
        after_help = "\
An election is a lock name whose holder is the leader; its term is the fencing token,
higher for every new leader. Candidates wait in line; a leader that crashes is replaced
once its lease has passed (lease x 1.01, plus one poll).

Examples:
  lynk leader run my-locks scheduler --payload 10.0.0.7:8080 -- ./schedule.sh
  lynk leader show my-locks scheduler
  lynk leader follow my-locks scheduler --output json"
    )]
    Leader(LeaderCommand),
    /// Acquire a lock and keep it after exiting, for scripts (no heartbeat).
    #[command(after_help = "\
Nothing heartbeats the lock after lynk exits: choose a lease longer than the work,
and release it with `lynk release` (printed). Others may take the lock over once the
lease has passed without a release. Prefer `lynk run` when one command does the work.

Examples:
  lynk acquire my-locks deploy --lease 30m
  v=$(lynk acquire my-locks deploy --lease 30m --output json | jq -r .version)
  ...
  lynk release my-locks deploy --version \"$v\"")]
    Acquire(AcquireArgs),
    /// Release a lock taken with `lynk acquire`, or force-release a stuck lock or a group.
    #[command(after_help = "\
--version V or --token T release only if the lock is still held by that acquisition
(exit 4 otherwise). --force releases whoever holds it, after a confirmation on a
terminal (or --yes); the holder's next heartbeat then finds the lock gone and stops.
--group G --force releases every held lock of group G (a grouped layout), one line each.

Examples:
  lynk release my-locks deploy --version 1b4e28ba-2fa1-11d2-883f-0016d3cca427
  lynk release my-locks deploy --token 1732771234567890
  lynk release my-locks stuck-job --force --yes
  lynk release app-table --group orders --force --yes --sort-key SK --grouped")]
    Release(ReleaseArgs),
    /// Run the original quickstart: workers contending for "my lock".
    #[command(after_help = "\
In memory by default (no AWS needed); --table runs it on a real lock table.

Examples:
  lynk demo
  lynk demo --workers 4 --hold 500ms --lease 5s
  lynk demo --table lynk-quickstart --hold 2s")]
    Demo(DemoArgs),
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  lynk completions bash > ~/.local/share/bash-completion/completions/lynk
  lynk completions zsh > \"${fpath[1]}/_lynk\"
  lynk completions fish > ~/.config/fish/completions/lynk.fish")]
    Completions(CompletionsArgs),
}

/// One table name.
#[derive(Debug, Args)]
pub struct TableArg {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
}

/// Options of `lynk locks`.
#[derive(Debug, Args)]
pub struct LocksArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// Only this lock group's locks (one Query instead of a Scan); needs a
    /// grouped layout (--sort-key NAME --grouped).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// Options of `lynk create-table`.
#[derive(Debug, Args)]
pub struct CreateTableArgs {
    /// The table name (3 to 255 characters of A-Z a-z 0-9 _ . -).
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// Billing mode.
    #[arg(long, value_enum, default_value_t = BillingArg::OnDemand)]
    pub billing: BillingArg,
    /// Read capacity units, with --billing provisioned (the original used 5).
    #[arg(long, value_name = "UNITS", value_parser = clap::value_parser!(i64).range(1..=40000))]
    pub read_capacity: Option<i64>,
    /// Write capacity units, with --billing provisioned (the original used 5).
    #[arg(long, value_name = "UNITS", value_parser = clap::value_parser!(i64).range(1..=40000))]
    pub write_capacity: Option<i64>,
    /// Do not wait until the table is ACTIVE (TTL is then not enabled).
    #[arg(long)]
    pub no_wait: bool,
    /// Do not enable TTL on `expiresAt` (released records are then never cleaned up).
    #[arg(long)]
    pub no_ttl: bool,
}

/// Billing modes of a new table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BillingArg {
    /// Pay per request.
    OnDemand,
    /// Fixed capacity (--read-capacity, --write-capacity; default 5 each).
    Provisioned,
}

/// Options of `lynk list-tables`.
#[derive(Debug, Args)]
pub struct ListTablesArgs {
    /// Only tables whose name starts with this.
    #[arg(long)]
    pub prefix: Option<String>,
}

/// Options of `lynk delete-table`.
#[derive(Debug, Args)]
pub struct DeleteTableArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// Delete even if the table is not tagged lynk=lock-table (lynk did not create it).
    #[arg(long)]
    pub force: bool,
    /// Do not wait until the table is gone.
    #[arg(long)]
    pub no_wait: bool,
}

/// A table and a lock name.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// The lock name (1 to 2048 bytes).
    #[arg(value_parser = parse_lock_name)]
    pub lock: String,
}

/// Options of `lynk describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The table and lock.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Follow the record until interrupted.
    #[arg(long)]
    pub watch: bool,
}

/// Options of `lynk run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// The lock name (1 to 2048 bytes); several names: all of them, or none.
    #[arg(required = true, num_args = 1.., value_name = "LOCK", value_parser = parse_lock_name)]
    pub locks: Vec<String>,
    /// LOCK is a counting semaphore with this many permits (1 to 100): hold one of them.
    #[arg(long, value_name = "N", value_parser = parse_permits)]
    pub permits: Option<u32>,
    /// The lease: how long the lock outlives a crashed lynk (heartbeat every third of it).
    #[arg(long, default_value = "20s", value_parser = parse_lease)]
    pub lease: Duration,
    /// Give up after waiting this long for the lock (0: try once; default: wait forever).
    #[arg(long, value_parser = parse_wait)]
    pub wait: Option<Duration>,
    /// After the lease is lost, how long the command has between SIGTERM and SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_wait)]
    pub grace: Duration,
    /// Text stored in the lock record while the command runs (see `lynk describe`).
    #[arg(long)]
    pub payload: Option<String>,
    /// Wake-ups while waiting.
    #[command(flatten)]
    pub wake: WakeArgs,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        last = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Waiting options of the commands that wait for a lock: polling and wake-ups.
#[derive(Debug, Args)]
pub struct WakeArgs {
    /// While waiting, read the lock at most this often once the first quick polls
    /// (0.1s, 0.2s, 0.4s) are done (default 1.5s; at least four times per lease of the
    /// holder). Longer: fewer reads (each costs a read unit), a later handover unless
    /// wake-ups are on.
    #[arg(long, value_name = "DURATION", value_parser = parse_poll)]
    pub poll_interval: Option<Duration>,
    /// While waiting, listen for wake-up datagrams on this UDP address (ip:port; port 0
    /// picks one), so the releasing holder can hand over at once instead of at the
    /// next poll. The holders must reach it (same network; UDP allowed in).
    #[arg(long, value_name = "ADDR")]
    pub wake_listen: Option<std::net::SocketAddr>,
    /// The address other clients send wake-ups to, if not --wake-listen's (required
    /// when listening on 0.0.0.0).
    #[arg(long, value_name = "ADDR", requires = "wake_listen")]
    pub wake_advertise: Option<std::net::SocketAddr>,
}

/// The `lynk leader` subcommands.
#[derive(Debug, Subcommand)]
pub enum LeaderCommand {
    /// Campaign, then run a command while leader (resigns when it exits).
    #[command(after_help = "\
Waits until this process leads (up to --wait; forever if not given), then runs COMMAND
with LYNK_TERM (the term: a fencing token higher than every earlier leader's),
LYNK_LEADER_PAYLOAD, LYNK_FENCING_TOKEN (= LYNK_TERM), LYNK_LOCK_NAME and LYNK_TABLE in
its environment. When the command exits, lynk resigns (the next candidate takes over at its
next poll) and exits with the command's code. If leadership is lost, the command gets SIGTERM,
then SIGKILL after --grace; exit 4. Not leader within --wait: exit 3, the command is not run.

Examples:
  lynk leader run my-locks scheduler -- ./schedule.sh
  lynk leader run my-locks scheduler --payload 10.0.0.7:8080 --lease 10s -- ./serve.sh
  lynk leader run my-locks scheduler --wait 0 -- ./once.sh   # only if nobody leads")]
    Run(LeaderRunArgs),
    /// Print the current leader (host, term, payload), or that there is none.
    #[command(after_help = "\
Exit 0 whether or not there is a leader (JSON: \"leader\": null when there is none).
The leader is what the election's record says now: a leader that crashed still shows
until its lease has passed and a candidate takes over.

Examples:
  lynk leader show my-locks scheduler
  lynk leader show my-locks scheduler --output json | jq -r .leader.payload")]
    Show(ElectionArgs),
    /// Print a line whenever the leader changes, until interrupted.
    #[command(after_help = "\
Prints the leader as first read, then one line per change (new leader, new term, new
payload, or no leader), one poll per lease/4 (at most 1.5 s). With --output json, one
JSON object per line. Runs until interrupted (SIGINT, SIGTERM or SIGHUP: exit 0).

Examples:
  lynk leader follow my-locks scheduler
  lynk leader follow my-locks scheduler --output json | while read -r l; do ...; done")]
    Follow(ElectionArgs),
}

/// Options of `lynk leader run`.
#[derive(Debug, Args)]
pub struct LeaderRunArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// The election's name (the name of the lock its leader holds).
    #[arg(value_parser = parse_lock_name)]
    pub election: String,
    /// Text followers see while this process leads (e.g. its address).
    #[arg(long)]
    pub payload: Option<String>,
    /// The leader's lease: a crashed leader is replaced after about this long.
    #[arg(long, default_value = "20s", value_parser = parse_lease)]
    pub lease: Duration,
    /// Give up after waiting this long to lead (0: try once; default: wait forever).
    #[arg(long, value_parser = parse_wait)]
    pub wait: Option<Duration>,
    /// After leadership is lost, how long the command has between SIGTERM and SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_wait)]
    pub grace: Duration,
    /// Wake-ups while waiting.
    #[command(flatten)]
    pub wake: WakeArgs,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        last = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// A table and an election name.
#[derive(Debug, Args)]
pub struct ElectionArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// The election's name.
    #[arg(value_parser = parse_lock_name)]
    pub election: String,
}

/// Options of `lynk acquire`.
#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// The lock name (1 to 2048 bytes).
    #[arg(value_parser = parse_lock_name)]
    pub lock: String,
    /// How long the lock is yours without a heartbeat; longer than the work it covers.
    #[arg(long, required = true, value_parser = parse_lease)]
    pub lease: Duration,
    /// Give up after waiting this long for the lock (0: try once; default: wait forever).
    #[arg(long, value_parser = parse_wait)]
    pub wait: Option<Duration>,
    /// Text stored in the lock record (see `lynk describe`).
    #[arg(long)]
    pub payload: Option<String>,
}

/// Options of `lynk release`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["version", "token", "force"])))]
pub struct ReleaseArgs {
    /// The table name.
    #[arg(value_parser = parse_table_name)]
    pub table: String,
    /// The lock name (1 to 2048 bytes); or --group instead.
    #[arg(value_parser = parse_lock_name, required_unless_present = "group")]
    pub lock: Option<String>,
    /// With --force: release every held lock of this group (needs a grouped
    /// layout), printing what happened to each.
    #[arg(
        long,
        value_name = "GROUP",
        conflicts_with = "lock",
        requires = "force"
    )]
    pub group: Option<String>,
    /// Release only if the record still has this version (printed by `lynk acquire`).
    #[arg(long, conflicts_with = "force")]
    pub version: Option<String>,
    /// Release only if the lock is still held with this fencing token.
    #[arg(long, conflicts_with = "force")]
    pub token: Option<u64>,
    /// Release the lock whoever holds it (for a stuck lock).
    #[arg(long)]
    pub force: bool,
    /// With --force: do not ask for confirmation.
    #[arg(long, short = 'y', requires = "force")]
    pub yes: bool,
}

/// Options of `lynk demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many workers contend for the lock.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub workers: u32,
    /// How long each worker holds the lock (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_wait)]
    pub hold: Duration,
    /// The lease written into the lock record.
    #[arg(long, default_value = "20s", value_parser = parse_lease)]
    pub lease: Duration,
    /// The lock name.
    #[arg(long, default_value = "my lock", value_parser = parse_lock_name)]
    pub lock: String,
    /// Run against this DynamoDB lock table instead of in memory.
    #[arg(long, value_parser = parse_table_name)]
    pub table: Option<String>,
}

/// Options of `lynk completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
