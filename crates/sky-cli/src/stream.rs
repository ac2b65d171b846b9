//! Streaming a job's output to stdout (`sky launch`, `sky exec`, `sky logs`).

use std::io::Write;

use sky_launch::Backend;

use crate::{backend::report, interrupt::on_interrupt};

/// Writes the bytes it is given to stdout, flushed.
pub fn stdout_sink() -> impl FnMut(&[u8]) + Send {
    |b: &[u8]| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b);
        let _ = out.flush();
    }
}

/// Follows a job's logs until it ends; returns SkyPilot's job exit code.
pub async fn follow_job(backend: &Backend, cluster: &str, job: u64) -> i32 {
    on_interrupt(format!(
        "Interrupted: stopped streaming; job {job} keeps running on {cluster}. `sky logs {cluster} {job}` streams it again, `sky cancel {cluster} {job}` stops it."
    ));
    eprintln!(
        "Job submitted, ID: {job}. Streaming logs (Ctrl-C stops streaming; the job keeps running)."
    );
    let mut sink = stdout_sink();
    match backend
        .logs(cluster, Some(job), true, None, &mut sink)
        .await
    {
        Ok(rec) => {
            let status = rec.as_ref().map(|r| r.status);
            match &rec {
                Some(r) => eprintln!(
                    "Job {job} finished (status: {}{}).",
                    r.status,
                    exit_codes_suffix(&r.exit_codes)
                ),
                None => eprintln!("Job {job} is not in the queue of {cluster}."),
            }
            sky_launch::job_exit_code(status)
        }
        Err(e) => report(&e),
    }
}

fn exit_codes_suffix(codes: &[i32]) -> String {
    if codes.iter().all(|c| *c == 0) {
        String::new()
    } else {
        format!(
            ", exit code{} {}",
            if codes.len() == 1 { "" } else { "s" },
            codes
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}
