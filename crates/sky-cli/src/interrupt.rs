//! One command's async runtime, and what Ctrl-C prints while it runs.

use crate::exit;

/// What Ctrl-C prints, set by the command as it moves on (see [`on_interrupt`]).
static INTERRUPT_MESSAGE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

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
        tokio::select! {
            code = f => code,
            _ = tokio::signal::ctrl_c() => {
                let message = INTERRUPT_MESSAGE
                    .lock()
                    .ok()
                    .and_then(|m| m.clone())
                    .unwrap_or_else(|| "Interrupted.".into());
                eprintln!("\n{message}");
                exit::INTERRUPTED
            }
        }
    })
}
