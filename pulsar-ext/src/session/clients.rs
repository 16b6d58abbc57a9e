//! The clients attached to one session: who they are, what they may do, and what size the
//! terminal should be for them. Pure bookkeeping, no I/O, so every rule is unit-tested here.

use std::collections::HashMap;

use pulsar_protocol::{ClientMode, ResizePolicy};

/// Identifies the connection that attached a client, so that closing the connection
/// detaches exactly its clients.
pub type ClientOwner = u64;

/// Most `receive_output` cursors one session remembers. Cursors are kept per client id, and
/// any caller may invent ids; past this the least recently used is forgotten (its next read
/// without `since` starts at the oldest byte held, as for a new client).
pub(crate) const MAX_CURSORS: usize = 256;

/// An attached client.
#[derive(Debug, Clone)]
struct Client {
    owner: ClientOwner,
    mode: ClientMode,
    /// The size this client last asked for (interactive clients only).
    size: Option<(u16, u16)>,
}

/// A refused attach: the session already has `max` clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull {
    pub max: usize,
}

/// The client table, terminal size and resize policy of one session.
#[derive(Debug)]
pub(crate) struct ClientTable {
    /// The clients and cursors: made by the first attach or remembered cursor and dropped
    /// once both are empty again (two maps are 96 bytes, and most idle sessions have none).
    maps: Option<Box<Maps>>,
    size: (u16, u16),
    policy: ResizePolicy,
}

/// The clients attached, and where readers without a `since` continue.
#[derive(Debug, Default)]
struct Maps {
    clients: HashMap<String, Client>,
    /// Where each client's `receive_output` continues when it gives no `since`, with when
    /// it was last used (a tick of `clock`).
    cursors: HashMap<String, (u64, u64)>,
    clock: u64,
}

impl ClientTable {
    /// An empty table for a terminal of `size` governed by `policy`.
    pub fn new(size: (u16, u16), policy: ResizePolicy) -> Self {
        Self {
            maps: None,
            size,
            policy,
        }
    }

    /// The clients attached, by id.
    fn clients(&self) -> impl Iterator<Item = (&String, &Client)> {
        self.maps.iter().flat_map(|maps| maps.clients.iter())
    }

    fn client(&self, client_id: &str) -> Option<&Client> {
        self.maps.as_ref()?.clients.get(client_id)
    }

    fn maps_mut(&mut self) -> &mut Maps {
        self.maps.get_or_insert_with(Box::default)
    }

    /// Drops the maps once nothing is in them.
    fn tidy(&mut self) {
        if self
            .maps
            .as_ref()
            .is_some_and(|maps| maps.clients.is_empty() && maps.cursors.is_empty())
        {
            self.maps = None;
        }
    }

    /// Clients attached now.
    pub fn len(&self) -> usize {
        self.maps.as_ref().map_or(0, |maps| maps.clients.len())
    }

    /// True when no client is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The terminal's size now.
    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    /// Records that the terminal now has `size`.
    pub fn set_size(&mut self, size: (u16, u16)) {
        self.size = size;
    }

    /// How the size follows the clients.
    pub fn policy(&self) -> ResizePolicy {
        self.policy
    }

    /// Registers (or re-registers, with a new mode and owner) `client_id`, unless that would
    /// make more than `max` clients.
    pub fn attach(
        &mut self,
        client_id: &str,
        owner: ClientOwner,
        mode: ClientMode,
        max: usize,
    ) -> Result<(), TableFull> {
        if self.client(client_id).is_none() && self.len() >= max {
            return Err(TableFull { max });
        }
        self.maps_mut().clients.insert(
            client_id.to_owned(),
            Client {
                owner,
                mode,
                size: None,
            },
        );
        Ok(())
    }

    /// Unregisters `client_id` and forgets its cursor. `None` if it was not attached;
    /// otherwise the size the policy now gives, if any.
    pub fn detach(&mut self, client_id: &str) -> Option<Option<(u16, u16)>> {
        let maps = self.maps.as_mut()?;
        maps.clients.remove(client_id)?;
        maps.cursors.remove(client_id);
        self.tidy();
        Some(self.policy_size(None))
    }

    /// The mode `client_id` is attached in, if it is.
    pub fn mode_of(&self, client_id: &str) -> Option<ClientMode> {
        self.client(client_id).map(|c| c.mode)
    }

    /// The clients `owner` attached, with their modes.
    pub fn owned_by(&self, owner: ClientOwner) -> Vec<(String, ClientMode)> {
        self.clients()
            .filter(|(_, c)| c.owner == owner)
            .map(|(id, c)| (id.clone(), c.mode))
            .collect()
    }

    /// Unregisters every client `owner` attached, and forgets their cursors and
    /// `cursor_key`'s. Returns how many were detached and, if any were, the size the policy
    /// now gives.
    pub fn detach_owner(
        &mut self,
        owner: ClientOwner,
        cursor_key: &str,
    ) -> (usize, Option<(u16, u16)>) {
        let gone: Vec<String> = self
            .clients()
            .filter(|(_, c)| c.owner == owner)
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(maps) = self.maps.as_mut() {
            for id in &gone {
                maps.clients.remove(id);
                maps.cursors.remove(id);
            }
            maps.cursors.remove(cursor_key);
        }
        self.tidy();
        let target = if gone.is_empty() {
            None
        } else {
            self.policy_size(None)
        };
        (gone.len(), target)
    }

    /// True when `client_id` (or, for an unattached id, every client `owner` attached here)
    /// is read-only. An unattached id of a connection that attached nothing may act.
    pub fn is_read_only(&self, client_id: &str, owner: ClientOwner) -> bool {
        match self.client(client_id) {
            Some(client) => client.mode == ClientMode::ReadOnly,
            None => {
                let mut mine = self
                    .clients()
                    .map(|(_, c)| c)
                    .filter(|c| c.owner == owner)
                    .peekable();
                mine.peek().is_some() && mine.all(|c| c.mode == ClientMode::ReadOnly)
            }
        }
    }

    /// Records `client_id`'s request for `size` (an unattached id counts only as the latest
    /// request) and returns the size the policy gives.
    pub fn request_size(&mut self, client_id: &str, size: (u16, u16)) -> Option<(u16, u16)> {
        if let Some(client) = self
            .maps
            .as_mut()
            .and_then(|maps| maps.clients.get_mut(client_id))
        {
            client.size = Some(size);
        }
        self.policy_size(Some(size))
    }

    /// The size the policy gives, with `requested` as the latest request. Read-only clients
    /// never count.
    fn policy_size(&self, requested: Option<(u16, u16)>) -> Option<(u16, u16)> {
        let sizes = self
            .clients()
            .map(|(_, c)| c)
            .filter(|c| c.mode == ClientMode::Interactive)
            .filter_map(|c| c.size);
        match self.policy {
            ResizePolicy::Latest => requested,
            ResizePolicy::Smallest => sizes
                .reduce(|(c1, r1), (c2, r2)| (c1.min(c2), r1.min(r2)))
                .or(requested),
            ResizePolicy::Largest => sizes
                .reduce(|(c1, r1), (c2, r2)| (c1.max(c2), r1.max(r2)))
                .or(requested),
        }
    }

    /// Where `key`'s last `receive_output` ended.
    pub fn cursor(&mut self, key: &str) -> Option<u64> {
        let maps = self.maps.as_mut()?;
        maps.clock += 1;
        let now = maps.clock;
        maps.cursors.get_mut(key).map(|(offset, used)| {
            *used = now;
            *offset
        })
    }

    /// Remembers that `key`'s next `receive_output` continues at `offset`, forgetting the
    /// least recently used cursor when there are [`MAX_CURSORS`].
    pub fn remember_cursor(&mut self, key: &str, offset: u64) {
        let maps = self.maps_mut();
        maps.clock += 1;
        if !maps.cursors.contains_key(key) && maps.cursors.len() >= MAX_CURSORS {
            let oldest = maps
                .cursors
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                maps.cursors.remove(&oldest);
            }
        }
        maps.cursors.insert(key.to_owned(), (offset, maps.clock));
    }

    /// Cursors remembered now.
    #[cfg(test)]
    fn cursor_count(&self) -> usize {
        self.maps.as_ref().map_or(0, |maps| maps.cursors.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: ClientOwner = 1;
    const OTHER: ClientOwner = 2;

    fn table(policy: ResizePolicy) -> ClientTable {
        ClientTable::new((80, 24), policy)
    }

    #[test]
    fn a_table_holds_no_maps_until_used_and_none_once_emptied_again() {
        let mut t = table(ResizePolicy::Latest);
        assert!(t.maps.is_none());
        t.attach("a", ME, ClientMode::Interactive, 8).unwrap();
        t.remember_cursor("a", 10);
        t.remember_cursor("reader", 20);
        assert!(t.maps.is_some());
        t.detach("a").unwrap();
        assert!(t.maps.is_some(), "the reader's cursor is still remembered");
        assert_eq!(t.cursor("reader"), Some(20));
        t.detach_owner(ME, "reader");
        assert!(t.maps.is_none());
        assert_eq!(t.cursor("reader"), None);
    }

    #[test]
    fn attach_beyond_the_limit_is_refused_but_reattach_is_not() {
        let mut t = table(ResizePolicy::Latest);
        t.attach("a", ME, ClientMode::Interactive, 1).unwrap();
        assert_eq!(
            t.attach("b", ME, ClientMode::Interactive, 1),
            Err(TableFull { max: 1 })
        );
        t.attach("a", OTHER, ClientMode::ReadOnly, 1).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.is_read_only("a", OTHER));
    }

    #[test]
    fn detaching_an_unknown_client_says_so() {
        let mut t = table(ResizePolicy::Latest);
        assert_eq!(t.detach("nobody"), None);
    }

    #[test]
    fn unattached_ids_act_unless_their_connection_attached_only_read_only_clients() {
        let mut t = table(ResizePolicy::Latest);
        assert!(!t.is_read_only("anon", ME));
        t.attach("viewer", ME, ClientMode::ReadOnly, 8).unwrap();
        assert!(t.is_read_only("anon", ME));
        assert!(!t.is_read_only("anon", OTHER));
        t.attach("typist", ME, ClientMode::Interactive, 8).unwrap();
        assert!(!t.is_read_only("anon", ME));
        assert!(t.is_read_only("viewer", ME));
    }

    #[test]
    fn latest_policy_takes_each_request_as_it_comes() {
        let mut t = table(ResizePolicy::Latest);
        t.attach("a", ME, ClientMode::Interactive, 8).unwrap();
        t.attach("b", ME, ClientMode::Interactive, 8).unwrap();
        assert_eq!(t.request_size("a", (100, 30)), Some((100, 30)));
        assert_eq!(t.request_size("b", (60, 20)), Some((60, 20)));
        // After a departure there is no new request, so nothing changes.
        assert_eq!(t.detach("b"), Some(None));
    }

    #[test]
    fn smallest_policy_recomputes_when_a_client_leaves() {
        let mut t = table(ResizePolicy::Smallest);
        for id in ["a", "b", "c"] {
            t.attach(id, ME, ClientMode::Interactive, 8).unwrap();
        }
        t.request_size("a", (120, 40));
        t.request_size("b", (100, 50));
        assert_eq!(t.request_size("c", (90, 45)), Some((90, 40)));
        assert_eq!(t.detach("c"), Some(Some((100, 40))));
    }

    #[test]
    fn largest_policy_takes_the_largest_of_each_dimension() {
        let mut t = table(ResizePolicy::Largest);
        t.attach("a", ME, ClientMode::Interactive, 8).unwrap();
        t.attach("b", ME, ClientMode::Interactive, 8).unwrap();
        t.request_size("a", (120, 20));
        assert_eq!(t.request_size("b", (80, 50)), Some((120, 50)));
    }

    #[test]
    fn read_only_clients_never_count_for_the_size() {
        let mut t = table(ResizePolicy::Largest);
        t.attach("viewer", ME, ClientMode::ReadOnly, 8).unwrap();
        t.attach("typist", ME, ClientMode::Interactive, 8).unwrap();
        t.request_size("typist", (80, 24));
        // Even if a read-only client's request were recorded, it would not count.
        assert_eq!(t.request_size("viewer", (200, 60)), Some((80, 24)));
    }

    #[test]
    fn closing_a_connection_detaches_only_its_clients_and_recomputes_the_size() {
        let mut t = table(ResizePolicy::Smallest);
        t.attach("mine", ME, ClientMode::Interactive, 8).unwrap();
        t.attach("theirs", OTHER, ClientMode::Interactive, 8)
            .unwrap();
        t.request_size("mine", (40, 10));
        t.request_size("theirs", (100, 30));
        assert_eq!(t.detach_owner(ME, "conn-1"), (1, Some((100, 30))));
        assert_eq!(t.len(), 1);
        assert_eq!(t.detach_owner(ME, "conn-1"), (0, None));
    }

    #[test]
    fn cursors_are_bounded_and_forget_the_least_recently_used() {
        let mut t = table(ResizePolicy::Latest);
        for i in 0..MAX_CURSORS {
            t.remember_cursor(&format!("c{i}"), i as u64);
        }
        // Touch c0 so that c1 becomes the oldest.
        assert_eq!(t.cursor("c0"), Some(0));
        t.remember_cursor("new", 7);
        assert_eq!(t.cursor_count(), MAX_CURSORS);
        assert_eq!(t.cursor("c1"), None);
        assert_eq!(t.cursor("c0"), Some(0));
        assert_eq!(t.cursor("new"), Some(7));
    }

    #[test]
    fn detaching_forgets_the_clients_cursor() {
        let mut t = table(ResizePolicy::Latest);
        t.attach("a", ME, ClientMode::Interactive, 8).unwrap();
        t.remember_cursor("a", 42);
        t.detach("a");
        assert_eq!(t.cursor("a"), None);
    }
}
