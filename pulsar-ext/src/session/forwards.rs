//! Port forwards reached through the session table: the core finds the session and hands
//! the request to its backend, which alone knows whether it has a connection to forward over.

use pulsar_protocol::{ForwardId, ForwardInfo, ForwardSpec, SessionId, SessionState};

use super::{SessionError, SessionManager};

impl SessionManager {
    /// Adds forward `forward_id` as `spec` asks to live session `id`'s backend.
    pub async fn add_forward(
        &self,
        id: SessionId,
        forward_id: ForwardId,
        spec: &ForwardSpec,
    ) -> Result<ForwardInfo, SessionError> {
        let session = self.get(id)?;
        if !session.is_alive() {
            return Err(SessionError::InvalidState {
                id,
                op: "add a port forward",
                state: SessionState::Stopped,
            });
        }
        session
            .backend()
            .add_forward(forward_id, spec)
            .await
            .map_err(|source| SessionError::Forward { id, source })
    }

    /// Lists saved forward `forward_id` of session `id`, which could not be re-established
    /// (`why`), as `failed`: kept, so it is shown and can be removed, rather than dropped.
    pub fn keep_failed_forward(
        &self,
        id: SessionId,
        forward_id: ForwardId,
        spec: &ForwardSpec,
        why: String,
    ) -> Result<(), SessionError> {
        self.get(id)?
            .backend()
            .keep_failed_forward(forward_id, spec, why);
        Ok(())
    }

    /// The forwards of session `id`, or of every session (oldest session first).
    pub fn list_forwards(&self, id: Option<SessionId>) -> Result<Vec<ForwardInfo>, SessionError> {
        let sessions = match id {
            Some(id) => vec![self.get(id)?],
            None => {
                let mut all = self.all();
                all.sort_by_key(|s| s.created_at());
                all
            }
        };
        Ok(sessions
            .iter()
            .flat_map(|s| s.backend().forwards())
            .collect())
    }

    /// Removes forward `forward_id`, wherever it is; answers its session.
    pub async fn remove_forward(&self, forward_id: ForwardId) -> Result<SessionId, SessionError> {
        for session in self.all() {
            if session
                .backend()
                .forwards()
                .iter()
                .any(|f| f.id == forward_id)
            {
                session
                    .backend()
                    .remove_forward(forward_id)
                    .await
                    .map_err(|source| SessionError::Forward {
                        id: session.id(),
                        source,
                    })?;
                return Ok(session.id());
            }
        }
        Err(SessionError::ForwardNotFound(forward_id))
    }
}
