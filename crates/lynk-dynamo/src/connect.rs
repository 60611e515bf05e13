//! Where to find DynamoDB and the credentials to use it: the standard AWS
//! chain, with explicit overrides.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;

use crate::classify::chain_text;
use crate::Error;

/// Time limits on each DynamoDB request, so a request to an endpoint that
/// stops answering (a half-open connection: a dropped route, a stuck NAT, a
/// dead load balancer keep the connection open while no bytes move) fails
/// within a bounded time instead of hanging.
///
/// A write that times out after it was sent is reported as
/// [`BackendErrorKind::OutcomeUnknown`](lynk_core::BackendErrorKind::OutcomeUnknown)
/// (it may have applied); a read that times out as
/// [`BackendErrorKind::Unavailable`](lynk_core::BackendErrorKind::Unavailable)
/// (retry it). The defaults suit the default 20 s lease, whose heartbeats run
/// every 6.7 s and whose lost-lease signal fires 17.8 s after the last
/// successful one; see `docs/dynamodb.md` for the reasoning. The lock engine
/// also bounds each call it makes, so these limits matter most for table
/// administration, fenced writes and direct backend calls.
///
/// ```
/// use std::time::Duration;
/// use lynk_dynamo::{AwsOptions, Timeouts};
///
/// // A lease of 5 s: give up on an attempt after 1 s, on a call after 2 s.
/// let options = AwsOptions::new().timeouts(Timeouts {
///     attempt: Duration::from_secs(1),
///     read: Duration::from_secs(1),
///     operation: Duration::from_secs(2),
///     ..Timeouts::default()
/// });
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection, TLS included (default 2 s).
    pub connect: Duration,
    /// From sending a request to the first byte of its response, per attempt
    /// (default 3 s).
    pub read: Duration,
    /// One attempt, from connecting to the whole response (default 3 s).
    pub attempt: Duration,
    /// One call, all of the SDK's retries and their backoffs included
    /// (default 8 s).
    pub operation: Duration,
}

impl Timeouts {
    /// The defaults: connect 2 s, read 3 s, attempt 3 s, operation 8 s.
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        read: Duration::from_secs(3),
        attempt: Duration::from_secs(3),
        operation: Duration::from_secs(8),
    };

    /// As the SDK's timeout configuration.
    pub fn to_sdk(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.read)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::DEFAULT
    }
}

/// How to reach DynamoDB: region, endpoint and profile overrides on top of
/// the standard AWS configuration chain, and [time limits](Timeouts) on each
/// request.
///
/// Everything left unset comes from the usual places, in the SDK's order:
/// environment variables (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_PROFILE`,
/// `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, …), the shared config
/// and credentials files (including SSO), web identity, and container or
/// instance roles.
///
/// ```no_run
/// # async fn f() -> Result<(), lynk_dynamo::Error> {
/// let client = lynk_dynamo::AwsOptions::new()
///     .region("eu-west-1")
///     .endpoint_url("http://127.0.0.1:8000") // e.g. DynamoDB Local
///     .load_client()
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AwsOptions {
    /// The region, instead of the chain's.
    pub region: Option<String>,
    /// The endpoint URL, instead of the chain's (AWS_ENDPOINT_URL…) or AWS's own.
    pub endpoint_url: Option<String>,
    /// The named profile of the shared config files, instead of `AWS_PROFILE`.
    pub profile: Option<String>,
    /// Check at load time that credentials can be found, so a missing
    /// credential is reported at once rather than on the first request
    /// (default `true`).
    pub check_credentials: Option<bool>,
    /// Time limits on each request; [`Timeouts::DEFAULT`] if unset. They
    /// replace the SDK's own defaults (which bound only connecting) and any
    /// set by the shared config.
    pub timeouts: Option<Timeouts>,
}

impl AwsOptions {
    /// No overrides: the standard chain decides everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `region`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sends requests to `url` (e.g. a local DynamoDB-compatible server).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Uses the named profile of `~/.aws/config` and `~/.aws/credentials`.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Whether to look up credentials at load time (default `true`).
    pub fn check_credentials(mut self, yes: bool) -> Self {
        self.check_credentials = Some(yes);
        self
    }

    /// Uses these time limits on each request (default [`Timeouts::DEFAULT`]).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = Some(timeouts);
        self
    }

    /// Loads the shared AWS configuration with these overrides.
    ///
    /// Fails with [`Error::NoRegion`] when no region is configured anywhere,
    /// and with [`Error::NoCredentials`] when no credentials can be found
    /// (unless [`check_credentials`](AwsOptions::check_credentials) is off).
    pub async fn load_config(&self) -> Result<SdkConfig, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(self.timeouts.unwrap_or_default().to_sdk());
        if let Some(r) = &self.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &self.endpoint_url {
            loader = loader.endpoint_url(u.clone());
        }
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p.clone());
        }
        #[cfg(feature = "tls-ring")]
        {
            // The SDK's HTTPS client with rustls on ring (feature `tls-ring`).
            use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https();
            loader = loader.http_client(http);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::NoRegion);
        }
        if self.check_credentials.unwrap_or(true) {
            match config.credentials_provider() {
                None => {
                    return Err(Error::NoCredentials {
                        detail: "no credentials provider is configured".into(),
                    })
                }
                Some(provider) => {
                    if let Err(e) = provider.provide_credentials().await {
                        return Err(Error::NoCredentials {
                            detail: chain_text(&e),
                        });
                    }
                }
            }
        }
        Ok(config)
    }

    /// Loads the configuration and builds a DynamoDB client from it.
    pub async fn load_client(&self) -> Result<aws_sdk_dynamodb::Client, Error> {
        Ok(aws_sdk_dynamodb::Client::new(&self.load_config().await?))
    }
}
