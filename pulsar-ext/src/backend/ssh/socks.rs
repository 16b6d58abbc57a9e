//! The SOCKS5 handshake a dynamic forward (`ssh -D`) answers: no authentication, CONNECT
//! only, to a domain name, an IPv4 or an IPv6 address (RFC 1928).

use std::net::{Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reply codes (RFC 1928 §6).
pub(super) mod reply {
    /// The connection is open.
    pub const SUCCEEDED: u8 = 0;
    /// Any other failure (the SSH connection down).
    pub const GENERAL_FAILURE: u8 = 1;
    /// The server could not reach the target.
    pub const CONNECTION_REFUSED: u8 = 5;
    /// Not CONNECT.
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    /// An address type other than IPv4, a domain name or IPv6.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

/// Reads a client's greeting and CONNECT request; answers the greeting and, for a request
/// refused here, the request. Returns where to connect (`host`, `port`); the caller replies
/// with [`send_reply`] once it knows whether the connection opened.
pub(super) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<(String, u16), String> {
    let io = |err: std::io::Error| format!("SOCKS handshake: {err}");
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.map_err(io)?;
    if head[0] != 5 {
        return Err(format!("not a SOCKS5 client (version byte {})", head[0]));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut methods).await.map_err(io)?;
    if !methods.contains(&0) {
        let _ = stream.write_all(&[5, 0xff]).await;
        return Err("the SOCKS client offers no method without authentication".to_owned());
    }
    stream.write_all(&[5, 0]).await.map_err(io)?;
    let mut request = [0u8; 4];
    stream.read_exact(&mut request).await.map_err(io)?;
    if request[0] != 5 {
        return Err(format!(
            "not a SOCKS5 request (version byte {})",
            request[0]
        ));
    }
    if request[1] != 1 {
        let _ = send_reply(stream, reply::COMMAND_NOT_SUPPORTED).await;
        return Err(format!(
            "SOCKS command {} is not supported (only CONNECT)",
            request[1]
        ));
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            stream.read_exact(&mut ip).await.map_err(io)?;
            Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await.map_err(io)?;
            let mut name = vec![0u8; usize::from(len[0])];
            stream.read_exact(&mut name).await.map_err(io)?;
            String::from_utf8(name).map_err(|_| "a SOCKS host name that is not UTF-8".to_owned())?
        }
        4 => {
            let mut ip = [0u8; 16];
            stream.read_exact(&mut ip).await.map_err(io)?;
            Ipv6Addr::from(ip).to_string()
        }
        other => {
            let _ = send_reply(stream, reply::ADDRESS_TYPE_NOT_SUPPORTED).await;
            return Err(format!("SOCKS address type {other} is not supported"));
        }
    };
    let mut port = [0u8; 2];
    stream.read_exact(&mut port).await.map_err(io)?;
    Ok((host, u16::from_be_bytes(port)))
}

/// Answers the CONNECT request with `code`; the bound address is not known here (the server
/// connects), so it is reported as 0.0.0.0:0, as OpenSSH does.
pub(super) async fn send_reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: u8,
) -> std::io::Result<()> {
    stream.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn handshake(request: &[u8]) -> (Result<(String, u16), String>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(request).await.unwrap();
        let result = accept(&mut server).await;
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        (result, answer)
    }

    #[tokio::test]
    async fn connect_to_a_domain_name_ipv4_and_ipv6() {
        let mut domain = vec![5, 1, 0, 5, 1, 0, 3, 9];
        domain.extend_from_slice(b"localhost");
        domain.extend_from_slice(&8080u16.to_be_bytes());
        let (target, answer) = handshake(&domain).await;
        assert_eq!(target.unwrap(), ("localhost".to_owned(), 8080));
        assert_eq!(answer, [5, 0]);

        let ipv4 = [5, 2, 2, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 22];
        assert_eq!(handshake(&ipv4).await.0.unwrap(), ("10.0.0.1".into(), 22));

        let mut ipv6 = vec![5, 1, 0, 5, 1, 0, 4];
        ipv6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ipv6.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(handshake(&ipv6).await.0.unwrap(), ("::1".into(), 443));
    }

    #[tokio::test]
    async fn clients_wanting_authentication_or_bind_are_refused() {
        let (result, answer) = handshake(&[5, 1, 2]).await;
        assert!(result.unwrap_err().contains("authentication"));
        assert_eq!(answer, [5, 0xff]);

        let (result, answer) = handshake(&[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 1]).await;
        assert!(result.unwrap_err().contains("only CONNECT"));
        assert_eq!(answer[..4], [5, 0, 5, reply::COMMAND_NOT_SUPPORTED]);

        let (result, _) = handshake(&[4, 1, 0, 80]).await;
        assert!(result.unwrap_err().contains("not a SOCKS5 client"));
    }
}
