//! ListSessions: the caller's own live sessions.

use super::{Authority, AuthorityError};
use crate::domain::{AccessToken, Session, SessionId};

impl Authority {
    /// The caller's live sessions, newest first, and which one is theirs.
    pub async fn list_sessions(&self, token: &AccessToken) -> Result<(Vec<Session>, SessionId), AuthorityError> {
        let (claims, session) = self.authenticate(token).await?;
        let sessions = self.repository.list_live_sessions(claims.user_id, self.now()).await?;
        Ok((sessions, session.id))
    }
}
