//! Points inside a use case where a test can hold a call, to let another
//! call run in between deterministically (no sleeps). Production passes
//! [`Pauses::none`], and then a pause point costs one branch.

use std::{future::Future, pin::Pin, sync::Arc};

/// Holds a call until the test lets it go.
pub trait Pause: Send + Sync {
    fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Where the authority may be held; each `None` runs straight through.
#[derive(Clone, Default)]
pub struct Pauses {
    /// Login, after the password was checked and before the session is
    /// written: where a disable or a password change can race it.
    pub login_after_password_check: Option<Arc<dyn Pause>>,
}

impl Pauses {
    pub fn none() -> Self {
        Self::default()
    }
}

pub(super) async fn at(pause: &Option<Arc<dyn Pause>>) {
    if let Some(pause) = pause {
        pause.wait().await;
    }
}
