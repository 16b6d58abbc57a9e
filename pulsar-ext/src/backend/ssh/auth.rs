//! SSH authentication: the agent, the key files, then the password, as far as the server
//! still offers each method. Errors list what was tried, never a secret.

use std::path::Path;
use std::sync::Arc;

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::{MethodKind, MethodSet};

use super::ConnectError;
use super::connect::{Callbacks, Target};

/// Rounds of keyboard-interactive prompts answered before giving up.
const MAX_PROMPT_ROUNDS: usize = 4;

/// Tries the agent, the key files, then the password, as far as the server still accepts
/// each method. Errors list what was tried, never a secret.
pub(super) async fn authenticate(
    handle: &mut client::Handle<Callbacks>,
    target: &Target,
) -> Result<(), ConnectError> {
    let mut tried: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // What the server still accepts; unknown until the first failure says.
    let mut accepts: Option<MethodSet> = None;
    let allows = |accepts: &Option<MethodSet>, kind: MethodKind| {
        accepts.as_ref().is_none_or(|set| set.contains(&kind))
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let user = target.user.as_str();
    let lost = |err: &dyn std::fmt::Display| target.failed(format!("during authentication: {err}"));

    if target.agent
        && let Some(socket) = std::env::var_os("SSH_AUTH_SOCK")
    {
        match AgentClient::connect_uds(&socket).await {
            Err(err) => notes.push(format!(
                "the agent at {} is unreachable ({err})",
                Path::new(&socket).display()
            )),
            Ok(mut agent) => match agent.request_identities().await {
                Err(err) => notes.push(format!("the agent did not list its keys ({err})")),
                Ok(identities) => {
                    let keys: Vec<_> = identities
                        .into_iter()
                        .filter_map(|identity| match identity {
                            AgentIdentity::PublicKey { key, .. } => Some(key),
                            AgentIdentity::Certificate { .. } => None,
                        })
                        .collect();
                    if keys.is_empty() {
                        notes.push("the agent holds no keys".to_owned());
                    } else if allows(&accepts, MethodKind::PublicKey) {
                        tried.push(format!("agent ({} keys)", keys.len()));
                    }
                    for key in keys {
                        if !allows(&accepts, MethodKind::PublicKey) {
                            break;
                        }
                        let hash = key.algorithm().is_rsa().then_some(rsa_hash).flatten();
                        match handle
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                        {
                            Ok(AuthResult::Success) => return Ok(()),
                            Ok(AuthResult::Failure {
                                remaining_methods, ..
                            }) => accepts = Some(remaining_methods),
                            Err(err) => {
                                if handle.is_closed() {
                                    return Err(lost(&err));
                                }
                                notes.push(format!("the agent failed to sign ({err})"));
                                break;
                            }
                        }
                    }
                }
            },
        }
    }

    for path in &target.key_files {
        if !allows(&accepts, MethodKind::PublicKey) {
            break;
        }
        let passphrase = target.passphrase.clone();
        let file = path.clone();
        // Reading the file is disk work and decrypting a key runs bcrypt-pbkdf (CPU work):
        // both kept off the runtime's workers.
        let loaded = tokio::task::spawn_blocking(move || {
            file.exists()
                .then(|| russh::keys::load_secret_key(&file, passphrase.as_deref()))
        })
        .await
        .map_err(|err| target.failed(format!("loading {}: {err}", path.display())))?;
        let Some(loaded) = loaded else {
            if target.named_key_files {
                notes.push(format!("key file {} does not exist", path.display()));
            }
            continue;
        };
        let key = match loaded {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                notes.push(format!(
                    "key file {} is encrypted and no passphrase was given",
                    path.display()
                ));
                continue;
            }
            Err(err) => {
                let why = if target.passphrase.is_some() {
                    format!("{err} (wrong passphrase?)")
                } else {
                    err.to_string()
                };
                notes.push(format!("cannot use key file {}: {why}", path.display()));
                continue;
            }
        };
        tried.push(format!("key file {}", path.display()));
        let hash = key.algorithm().is_rsa().then_some(rsa_hash).flatten();
        match handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
        {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure {
                remaining_methods, ..
            }) => accepts = Some(remaining_methods),
            Err(err) => return Err(lost(&err)),
        }
    }

    if let Some(password) = &target.password {
        if allows(&accepts, MethodKind::Password) {
            tried.push("password".to_owned());
            match handle.authenticate_password(user, password.clone()).await {
                Ok(AuthResult::Success) => return Ok(()),
                Ok(AuthResult::Failure {
                    remaining_methods, ..
                }) => accepts = Some(remaining_methods),
                Err(err) => return Err(lost(&err)),
            }
        }
        // Servers that check passwords through PAM often offer only keyboard-interactive.
        if accepts
            .as_ref()
            .is_some_and(|set| set.contains(&MethodKind::KeyboardInteractive))
        {
            tried.push("keyboard-interactive".to_owned());
            let mut reply = handle
                .authenticate_keyboard_interactive_start(user, None)
                .await
                .map_err(|err| lost(&err))?;
            for _ in 0..MAX_PROMPT_ROUNDS {
                match reply {
                    KeyboardInteractiveAuthResponse::Success => return Ok(()),
                    KeyboardInteractiveAuthResponse::Failure { .. } => break,
                    KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                        // Hidden prompts get the password; echoed ones (a user name) nothing.
                        let answers = prompts
                            .iter()
                            .map(|p| {
                                if p.echo {
                                    String::new()
                                } else {
                                    password.clone()
                                }
                            })
                            .collect();
                        reply = handle
                            .authenticate_keyboard_interactive_respond(answers)
                            .await
                            .map_err(|err| lost(&err))?;
                    }
                }
            }
        }
    }

    if tried.is_empty() && notes.is_empty() {
        notes.push(
            "no agent (SSH_AUTH_SOCK), no key file in ~/.ssh and no password to try".to_owned(),
        );
    }
    Err(ConnectError::AuthFailed {
        host: target.host.clone(),
        port: target.port,
        user: target.user.clone(),
        tried,
        notes,
    })
}
