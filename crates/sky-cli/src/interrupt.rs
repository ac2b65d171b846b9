//! One command's async runtime, and what Ctrl-C prints while it runs.

use crate::exit;

use std::sync::atomic::{AtomicBool, Ordering};

use sky_launch::CancellationToken;

/// What Ctrl-C prints, set by the command as it moves on (see [`on_interrupt`]).
static INTERRUPT_MESSAGE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The token Ctrl-C cancels while [`CANCELS`] is set (see [`cancel_on_interrupt`]).
static TOKEN: std::sync::OnceLock<CancellationToken> = std::sync::OnceLock::new();
static CANCELS: AtomicBool = AtomicBool::new(false);

fn token() -> &'static CancellationToken {
    TOKEN.get_or_init(CancellationToken::new)
}

/// From now on the first Ctrl-C cancels the returned token instead of quitting: the command
/// (a launch) stops where it is, cleans up what it made and reports it. A second Ctrl-C quits
/// at once with the [`on_interrupt`] message.
pub fn cancel_on_interrupt() -> CancellationToken {
    CANCELS.store(true, Ordering::SeqCst);
    token().clone()
}

/// Ctrl-C quits again (with the [`on_interrupt`] message): the cancellable part is over.
pub fn stop_cancelling() {
    CANCELS.store(false, Ordering::SeqCst);
}

/// Sets what Ctrl-C prints from now on in this command: it must describe the moment (a launch
/// in progress, logs being streamed), never a stage the command has left.
pub fn on_interrupt(message: String) {
    if let Ok(mut m) = INTERRUPT_MESSAGE.lock() {
        *m = Some(message);
    }
}

/// Runs an async command body on a small runtime, with Ctrl-C turning into a clean message.
pub fn block_on<F: std::future::Future<Output = i32>>(f: F) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    rt.block_on(async {
        tokio::pin!(f);
        loop {
            tokio::select! {
                code = &mut f => return code,
                _ = tokio::signal::ctrl_c() => {
                    if CANCELS.swap(false, Ordering::SeqCst) {
                        eprintln!("\nInterrupted: cancelling (Ctrl-C again quits at once).");
                        token().cancel();
                        continue;
                    }
                    let message = INTERRUPT_MESSAGE
                        .lock()
                        .ok()
                        .and_then(|m| m.clone())
                        .unwrap_or_else(|| "Interrupted.".into());
                    eprintln!("\n{message}");
                    return exit::INTERRUPTED;
                }
            }
        }
    })
}
