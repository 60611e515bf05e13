//! Where to find DynamoDB and the credentials to use it: the standard AWS
//! chain, with explicit overrides.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;

use crate::classify::chain_text;
use crate::Error;

/// How to reach DynamoDB: region, endpoint and profile overrides on top of
/// the standard AWS configuration chain.
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

    /// Loads the shared AWS configuration with these overrides.
    ///
    /// Fails with [`Error::NoRegion`] when no region is configured anywhere,
    /// and with [`Error::NoCredentials`] when no credentials can be found
    /// (unless [`check_credentials`](AwsOptions::check_credentials) is off).
    pub async fn load_config(&self) -> Result<SdkConfig, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &self.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &self.endpoint_url {
            loader = loader.endpoint_url(u.clone());
        }
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p.clone());
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
