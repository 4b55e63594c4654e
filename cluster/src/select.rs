//! Node selection (sans-IO): which node takes a new publisher, or a viewer leaving a draining
//! node. Only nodes that serve media, are not draining, are in the region asked for and report a
//! load under the limit are candidates; the least loaded wins, and the asking node wins a tie
//! (a redirect costs the client a round trip, so it is made only when it buys something).
//!
//! **Must never:** choose a draining node, or a node whose entry has expired (the registry
//! lists live entries only).

use crate::registry::NodeInfo;

/// Who may be chosen, and who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// The asking node's id.
    pub me: &'a str,
    pub region: &'a str,
    /// Nodes with this many media sessions or more are full.
    pub max_load: u64,
    /// Whether the asking node may be the answer (not when it is draining).
    pub include_me: bool,
}

/// The node a new session should go to, among `nodes`.
pub fn choose<'n>(nodes: &'n [NodeInfo], s: Selection<'_>) -> Option<&'n NodeInfo> {
    nodes
        .iter()
        .filter(|n| !n.draining && n.region == s.region)
        .filter(|n| n.roles.iter().any(|r| r == "media"))
        .filter(|n| n.load.sessions() < s.max_load)
        .filter(|n| s.include_me || n.id != s.me)
        .min_by_key(|n| (n.load.sessions(), n.id != s.me, n.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Load;

    fn node(id: &str, region: &str, sessions: u64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            region: region.into(),
            url: format!("http://{id}:8080"),
            public_url: format!("https://{id}.example"),
            roles: vec!["api".into(), "media".into(), "hls".into()],
            draining: false,
            load: Load {
                publishers: 0,
                subscribers: sessions,
                relays: 0,
            },
        }
    }

    fn pick<'n>(nodes: &'n [NodeInfo], me: &str, include_me: bool) -> Option<&'n str> {
        let s = Selection {
            me,
            region: "eu",
            max_load: 100,
            include_me,
        };
        choose(nodes, s).map(|n| n.id.as_str())
    }

    #[test]
    fn the_least_loaded_node_of_the_region_is_chosen_and_the_asker_wins_a_tie() {
        let nodes = [node("a", "eu", 5), node("b", "eu", 3), node("c", "us", 0)];
        assert_eq!(pick(&nodes, "a", true), Some("b"));
        let tied = [node("a", "eu", 3), node("b", "eu", 3)];
        assert_eq!(pick(&tied, "b", true), Some("b"));
        assert_eq!(pick(&tied, "a", true), Some("a"));
    }

    #[test]
    fn draining_full_and_non_media_nodes_are_never_chosen() {
        let mut draining = node("b", "eu", 0);
        draining.draining = true;
        let full = node("c", "eu", 100);
        let mut subtitles = node("d", "eu", 0);
        subtitles.roles = vec!["subtitles".into()];
        let nodes = [node("a", "eu", 50), draining, full, subtitles];
        assert_eq!(pick(&nodes, "a", true), Some("a"));
        assert_eq!(pick(&nodes, "a", false), None, "nobody else can take it");
    }

    #[test]
    fn a_draining_node_sends_its_clients_elsewhere() {
        let nodes = [node("a", "eu", 0), node("b", "eu", 9)];
        assert_eq!(pick(&nodes, "a", false), Some("b"));
    }
}
