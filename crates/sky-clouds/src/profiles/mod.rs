//! The built-in profiles, one file per cloud. A new cloud adds a file here, a line in
//! `BUILTIN` (`lib.rs`), and its name to `SKYPILOT_CLOUDS` if SkyPilot lacks it.

mod aws;
mod azure;
mod gcp;
mod kubernetes;
mod lambda;
mod local;
mod runpod;
mod ssh;
mod vast;

pub use aws::AWS;
pub use azure::AZURE;
pub use gcp::GCP;
pub use kubernetes::KUBERNETES;
pub use lambda::LAMBDA;
pub use local::LOCAL;
pub use runpod::RUNPOD;
pub use ssh::SSH;
pub use vast::VAST;
