//! EC2 error codes → [`ProvisionError`] kinds and scopes (what failover blocks).
//!
//! The table follows SkyPilot's AWS failover handler and the EC2 error-code reference: capacity
//! is a zone's problem, quotas are per region, credentials are the whole cloud's, and a malformed
//! request stops failover (it would fail everywhere).

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sky_provider::{FailureScope, ProvisionError, ProvisionErrorKind};

/// The fix printed with every credentials error.
pub const AUTH_FIX: &str = "run `aws configure` (or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), make sure the IAM identity may call EC2 (ec2:RunInstances, ec2:Describe*, ec2:CreateSecurityGroup, ec2:ImportKeyPair, ...), then run `sky check aws`";

/// How one EC2 error code is classified: kind, scope, and a fix where the user must act.
pub fn classify(code: &str, http_status: Option<u16>) -> (ProvisionErrorKind, FailureScope) {
    use FailureScope::{Cloud, Region, Zone};
    use ProvisionErrorKind::*;
    // Some responses carry a `Server.` / `Client.` prefix (e.g. `Server.InsufficientInstanceCapacity`).
    let code = code
        .strip_prefix("Server.")
        .or_else(|| code.strip_prefix("Client."))
        .unwrap_or(code);
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientFreeAddressesInSubnet"
        | "SpotMaxPriceTooLow" => (Capacity, Zone),
        "InstanceLimitExceeded"
        | "VcpuLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "SecurityGroupLimitExceeded"
        | "RulesPerSecurityGroupLimitExceeded"
        | "VolumeLimitExceeded"
        | "MaxIOPSLimitExceeded"
        | "AddressLimitExceeded"
        | "ResourceLimitExceeded"
        | "PendingVerification" => (Quota, Region),
        "Unsupported" | "UnsupportedOperation" | "InvalidAvailabilityZone" => (NotSupported, Zone),
        "OptInRequired" => (NotSupported, Region),
        "UnauthorizedOperation"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "RequestExpired"
        | "MissingAuthenticationToken"
        | "AccessDenied"
        | "AccessDeniedException"
        | "Blocked" => (Auth, Cloud),
        "InvalidAMIID.NotFound"
        | "InvalidAMIID.Malformed"
        | "InvalidAMIID.Unavailable"
        | "InvalidSubnetID.NotFound"
        | "InvalidVpcID.NotFound" => (InvalidConfig, Region),
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "ServiceUnavailable"
        | "Unavailable"
        | "InternalError"
        | "InternalFailure"
        | "ServerInternal"
        | "RequestTimeout"
        | "IdempotentParameterMismatch" => (Transient, Zone),
        c if c.starts_with("InvalidParameter")
            || c.starts_with("InvalidInstanceType")
            || c.starts_with("InvalidKeyPair")
            || c.starts_with("InvalidBlockDeviceMapping")
            || c == "MissingParameter"
            || c == "InvalidGroup.NotFound" =>
        {
            (InvalidConfig, Cloud)
        }
        _ => match http_status {
            Some(s) if s >= 500 => (Transient, Zone),
            _ => (Other, Cloud),
        },
    }
}

/// The fix for a classified error, where there is one.
fn fix_for(kind: ProvisionErrorKind, code: &str) -> Option<String> {
    match kind {
        ProvisionErrorKind::Auth => Some(AUTH_FIX.to_string()),
        ProvisionErrorKind::InvalidConfig if code.starts_with("InvalidAMIID") => Some(
            "set `image_id` to an AMI that exists in this region (or per region: `image_id: {us-east-1: ami-...}`)".into(),
        ),
        ProvisionErrorKind::InvalidConfig => Some(
            "check the task's resources (instance_type, disk_size/disk_tier, image_id) and the `aws:` section of ~/.sky/config.yaml".into(),
        ),
        ProvisionErrorKind::Quota => Some(
            "request a higher EC2 quota for this region in the AWS console (Service Quotas), or let failover use another region".into(),
        ),
        _ => None,
    }
}

/// Builds the error for `code`/`message` of an EC2 call `op` ("run instances in us-east-1a").
/// `zone_tried` is false when AWS picked the zone itself: a zone-scoped failure then means the
/// whole region, since no other zone was chosen.
pub fn from_code(
    op: &str,
    code: &str,
    message: &str,
    http_status: Option<u16>,
    zone_tried: bool,
) -> ProvisionError {
    let (kind, mut scope) = classify(code, http_status);
    if scope == FailureScope::Zone && !zone_tried && kind != ProvisionErrorKind::Transient {
        scope = FailureScope::Region;
    }
    let mut e = ProvisionError::new(kind, scope, format!("{op}: {code}: {message}"));
    if let Some(fix) = fix_for(kind, code) {
        e = e.with_fix(fix);
    }
    e
}

/// Maps any SDK error of an EC2 call.
pub fn from_sdk<E>(
    op: &str,
    err: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    zone_tried: bool,
) -> ProvisionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let code = err.code().unwrap_or("Unknown");
            let message = err.message().unwrap_or("(no message)");
            from_code(op, code, message, status, zone_tried)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            let text = DisplayErrorContext(err).to_string();
            if mentions_credentials(&text) {
                return ProvisionError::auth(format!(
                    "{op}: no usable AWS credentials: {}",
                    credentials_summary(&text)
                ))
                .with_fix(AUTH_FIX);
            }
            ProvisionError::transient(FailureScope::Zone, format!("{op}: {text}"))
        }
        _ => {
            let text = DisplayErrorContext(err).to_string();
            if mentions_credentials(&text) {
                ProvisionError::auth(format!(
                    "{op}: no usable AWS credentials: {}",
                    credentials_summary(&text)
                ))
                .with_fix(AUTH_FIX)
            } else {
                ProvisionError::other(format!("{op}: {text}"))
            }
        }
    }
}

/// The credential chain's own account of what it tried, on one line, without the SDK's debug
/// dump of the same error that `DisplayErrorContext` appends.
fn credentials_summary(text: &str) -> String {
    let text = [
        "DispatchFailure(",
        "TimeoutError(",
        "ResponseError(",
        "ConstructionFailure(",
    ]
    .iter()
    .filter_map(|d| text.find(&format!(" ({d}")))
    .min()
    .map_or(text, |i| &text[..i]);
    let text = text
        .find("no credentials found in chain")
        .map_or(text, |i| &text[i..]);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .replace(":;", ":")
}

fn mentions_credentials(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("credential") || (t.contains("identity") && t.contains("resolv"))
}

/// The error code of an SDK error, if it is a service error.
pub fn code_of<E>(err: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureScope::*;
    use ProvisionErrorKind::*;

    #[test]
    fn credential_chain_failures_read_on_one_line() {
        // As aws-sdk's DisplayErrorContext renders a profile that does not exist.
        let text = "dispatch failure: other: the credential provider was not enabled: no credentials found in chain. Attempted:\n  Environment: the credential provider was not enabled: environment variable not set\n  Profile: the credential provider was not enabled: profile `nope` was not defined\n  EcsContainer: the credential provider was not enabled: ECS provider not configured (DispatchFailure(DispatchFailure { source: ConnectorError { kind: Other(None) } }))";
        assert_eq!(
            credentials_summary(text),
            "no credentials found in chain. Attempted: Environment: the credential provider was not enabled: environment variable not set; Profile: the credential provider was not enabled: profile `nope` was not defined; EcsContainer: the credential provider was not enabled: ECS provider not configured"
        );
        assert_eq!(credentials_summary("bad credentials"), "bad credentials");
    }

    #[test]
    fn table_of_real_aws_codes() {
        let table: &[(&str, Option<u16>, ProvisionErrorKind, FailureScope)] = &[
            ("InsufficientInstanceCapacity", Some(500), Capacity, Zone),
            (
                "Server.InsufficientInstanceCapacity",
                Some(500),
                Capacity,
                Zone,
            ),
            ("InsufficientHostCapacity", Some(400), Capacity, Zone),
            ("SpotMaxPriceTooLow", Some(400), Capacity, Zone),
            ("InstanceLimitExceeded", Some(400), Quota, Region),
            ("VcpuLimitExceeded", Some(400), Quota, Region),
            ("MaxSpotInstanceCountExceeded", Some(400), Quota, Region),
            ("SecurityGroupLimitExceeded", Some(400), Quota, Region),
            ("Unsupported", Some(400), NotSupported, Zone),
            ("OptInRequired", Some(401), NotSupported, Region),
            ("UnauthorizedOperation", Some(403), Auth, Cloud),
            ("AuthFailure", Some(401), Auth, Cloud),
            ("InvalidClientTokenId", Some(403), Auth, Cloud),
            ("SignatureDoesNotMatch", Some(403), Auth, Cloud),
            ("ExpiredToken", Some(400), Auth, Cloud),
            ("InvalidParameterValue", Some(400), InvalidConfig, Cloud),
            (
                "InvalidParameterCombination",
                Some(400),
                InvalidConfig,
                Cloud,
            ),
            ("InvalidInstanceType", Some(400), InvalidConfig, Cloud),
            ("InvalidKeyPair.NotFound", Some(400), InvalidConfig, Cloud),
            ("InvalidAMIID.NotFound", Some(400), InvalidConfig, Region),
            ("RequestLimitExceeded", Some(503), Transient, Zone),
            ("Unavailable", Some(503), Transient, Zone),
            ("InternalError", Some(500), Transient, Zone),
            ("SomethingNew", Some(502), Transient, Zone),
            ("SomethingNew", Some(400), Other, Cloud),
            ("SomethingNew", None, Other, Cloud),
        ];
        for (code, status, kind, scope) in table {
            assert_eq!(
                classify(code, *status),
                (*kind, *scope),
                "{code} {status:?}"
            );
        }
    }

    #[test]
    fn auth_and_config_errors_carry_a_fix() {
        let e = from_code("run instances", "AuthFailure", "bad", Some(401), true);
        assert_eq!(e.kind, Auth);
        assert!(e.fix.as_deref().unwrap().contains("aws configure"));
        let e = from_code(
            "run instances",
            "InvalidAMIID.NotFound",
            "x",
            Some(400),
            true,
        );
        assert!(e.fix.as_deref().unwrap().contains("image_id"));
        let e = from_code(
            "run instances",
            "InvalidParameterValue",
            "x",
            Some(400),
            true,
        );
        assert!(e.fix.is_some());
    }

    #[test]
    fn zone_failure_without_a_chosen_zone_blocks_the_region() {
        let e = from_code("run", "InsufficientInstanceCapacity", "m", Some(500), false);
        assert_eq!((e.kind, e.scope), (Capacity, Region));
        let e = from_code("run", "InsufficientInstanceCapacity", "m", Some(500), true);
        assert_eq!((e.kind, e.scope), (Capacity, Zone));
        assert!(e.message.contains("InsufficientInstanceCapacity"));
    }
}
