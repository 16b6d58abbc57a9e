//! The transfer methods, implemented on the daemon's transfers, and their errors as JSON-RPC
//! error objects.

use std::sync::Arc;

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use pulsar_protocol::error as code;
use pulsar_protocol::{SessionId, TransferApiServer, TransferDirection, TransferId, TransferInfo};
use serde_json::json;

use super::handlers::peer;
use crate::audit::{AuditLog, AuditRecord};
use crate::transfer::{StartRequest, TransferRequestError, Transfers};

/// The server side of [`TransferApiServer`].
pub(crate) struct TransferHandlers {
    pub transfers: Arc<Transfers>,
    pub audit: Arc<dyn AuditLog>,
}

impl From<TransferRequestError> for ErrorObjectOwned {
    fn from(err: TransferRequestError) -> Self {
        let message = err.to_string();
        let (code, data) = match err {
            TransferRequestError::Session(err) => return err.into(),
            TransferRequestError::NotFound(id) => {
                (code::TRANSFER_NOT_FOUND, json!({"transfer_id": id}))
            }
            TransferRequestError::DestinationExists { session_id, path } => (
                code::TRANSFER_DESTINATION_EXISTS,
                json!({"session_id": session_id, "path": path}),
            ),
            TransferRequestError::Failed {
                session_id, kind, ..
            } => (
                code::TRANSFER_FAILED,
                match kind {
                    Some(kind) => json!({"session_id": session_id, "kind": kind}),
                    None => json!({"session_id": session_id}),
                },
            ),
        };
        ErrorObjectOwned::owned(code, message, Some(data))
    }
}

impl TransferHandlers {
    fn audit(&self, ext: &Extensions, action: &'static str, info: &TransferInfo) {
        let caller = peer(ext);
        self.audit.record(AuditRecord {
            action,
            session_id: Some(info.session_id),
            uid: Some(caller.uid),
            pid: caller.pid,
            detail: format!(
                "{} {:?} {} {}",
                info.id, info.direction, info.local_path, info.remote_path
            ),
        });
    }
}

#[async_trait]
impl TransferApiServer for TransferHandlers {
    async fn start_transfer(
        &self,
        ext: &Extensions,
        session_id: SessionId,
        direction: TransferDirection,
        local_path: String,
        remote_path: String,
        overwrite: Option<bool>,
    ) -> RpcResult<TransferInfo> {
        let info = self
            .transfers
            .start(StartRequest {
                session_id,
                direction,
                local_path,
                remote_path,
                overwrite: overwrite.unwrap_or(false),
            })
            .await?;
        self.audit(ext, "start_transfer", &info);
        Ok(info)
    }

    async fn list_transfers(&self, session_id: Option<SessionId>) -> RpcResult<Vec<TransferInfo>> {
        Ok(self.transfers.list(session_id))
    }

    async fn get_transfer(&self, transfer_id: TransferId) -> RpcResult<TransferInfo> {
        Ok(self.transfers.get(transfer_id)?)
    }

    async fn cancel_transfer(
        &self,
        ext: &Extensions,
        transfer_id: TransferId,
    ) -> RpcResult<TransferInfo> {
        let info = self.transfers.cancel(transfer_id).await?;
        self.audit(ext, "cancel_transfer", &info);
        Ok(info)
    }
}
