//! Who owns the other end of a loopback TCP connection, from the kernel's socket tables.
//!
//! TCP has no `SO_PEERCRED`; but on loopback the peer's socket is in this network namespace's
//! `/proc/net/tcp` (or `tcp6`), with its owner's uid. The peer's socket is the entry whose
//! local address is the connection's remote one and whose remote address is our local one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid owning the socket at `peer` connected to `local`, if the kernel lists one.
/// Blocking (reads `/proc`): call on the blocking pool.
pub(super) fn peer_uid(local: SocketAddr, peer: SocketAddr) -> std::io::Result<Option<u32>> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            // No IPv6 in this kernel: nothing to find there.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        if let Some(uid) = find_uid(&text, local, peer) {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// The uid of the entry in a `/proc/net/tcp{,6}` table whose local address is `peer` and
/// remote address is `local`.
fn find_uid(table: &str, local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (from, to, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (same(parse_addr(from)?, peer) && same(parse_addr(to)?, local))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Equal addresses, an IPv4-mapped IPv6 address counting as its IPv4 one.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && plain(a.ip()) == plain(b.ip())
}

/// `0100007F:0BB8` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word as the kernel
/// holds it in memory, printed as a native-endian number.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex4(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    #[test]
    fn the_peer_entry_is_found_by_its_direction() {
        let server: SocketAddr = "127.0.0.1:3030".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let lo = hex4(Ipv4Addr::LOCALHOST);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {lo}:0BD6 {lo}:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 1 1\n\
             1: {lo}:9C40 {lo}:0BD6 01 00000000:00000000 00:00000000 00000000 65534        0 2 1\n"
        );
        assert_eq!(find_uid(&table, server, client), Some(65534));
        assert_eq!(find_uid(&table, client, server), Some(1000));
    }

    #[test]
    fn ipv6_loopback_parses() {
        let mut hex = String::new();
        for chunk in Ipv6Addr::LOCALHOST.octets().chunks(4) {
            let word: [u8; 4] = chunk.try_into().unwrap();
            hex.push_str(&format!("{:08X}", u32::from_ne_bytes(word)));
        }
        assert_eq!(
            parse_addr(&format!("{hex}:0BD6")),
            Some("[::1]:3030".parse().unwrap())
        );
    }

    #[test]
    fn a_real_loopback_connection_is_owned_by_this_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let uid = peer_uid(accepted.local_addr().unwrap(), peer).unwrap();
        assert_eq!(uid, Some(nix::unistd::geteuid().as_raw()));
        drop(client);
    }
}
