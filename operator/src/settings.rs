//! What the operator knows about its installation, fixed at start-up.

/// Installation-wide settings every build step reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Image of the data-plane pods (it must contain the `riffle` binary on its `PATH`).
    pub image: String,
    /// Pull policy of the data-plane image.
    pub image_pull_policy: String,
    /// Namespace the operator and the gateway are installed in (where the gateway's routes live).
    pub namespace: String,
    /// Namespace of the `Stream` objects created through the Kinesis API (CreateStream).
    pub api_namespace: String,
    /// AWS region reported in ARNs.
    pub region: String,
    /// AWS account id reported in ARNs.
    pub account: String,
}

impl Settings {
    /// The ARN Kinesis would give the stream `name`.
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{name}",
            self.region, self.account
        )
    }
}

#[cfg(test)]
impl Settings {
    /// Settings for unit tests.
    pub fn test() -> Self {
        Settings {
            image: "riffle:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            namespace: "riffle-system".into(),
            api_namespace: "default".into(),
            region: "us-east-1".into(),
            account: "000000000000".into(),
        }
    }
}
