//! Session binding: which attributes of the end user's client a session is
//! bound to, and whether a presented client still matches.
//!
//! Bound values are coarse on purpose, so that an ordinary client keeps
//! matching: the network prefix of its address (a /24 for IPv4, a /64 for
//! IPv6 by default), the family of its user agent ("Firefox on Linux", not
//! the version string that changes with every update), and its device id.
//! An attribute is compared only when the session has it; a presented client
//! that lacks it then mismatches, so that leaving a field out does not slip
//! past the binding. A caller that passes no client context at all is not
//! compared.

use std::net::IpAddr;

use super::ClientContext;

/// What a mismatch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    /// Nothing is compared.
    Off,
    /// A mismatch is recorded as a security event; the call is answered as usual.
    Log,
    /// A mismatch is recorded and the call refused.
    Enforce,
}

/// Which attributes a session is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundAttributes {
    pub device_id: bool,
    pub ip_prefix: bool,
    pub user_agent_family: bool,
}

impl BoundAttributes {
    pub const ALL: Self = Self {
        device_id: true,
        ip_prefix: true,
        user_agent_family: true,
    };
    pub const NONE: Self = Self {
        device_id: false,
        ip_prefix: false,
        user_agent_family: false,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingPolicy {
    pub mode: BindingMode,
    pub attributes: BoundAttributes,
    /// Leading bits of an IPv4 address that make its network (0 to 32).
    pub ipv4_prefix: u8,
    /// Leading bits of an IPv6 address that make its network (0 to 128).
    pub ipv6_prefix: u8,
}

impl Default for BindingPolicy {
    fn default() -> Self {
        Self {
            mode: BindingMode::Log,
            attributes: BoundAttributes::ALL,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        }
    }
}

/// A client as the binding sees it: coarse, comparable values. Stored on the
/// session (its device id, network and user-agent family).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientBinding {
    pub device_id: Option<String>,
    pub network: Option<String>,
    pub user_agent_family: Option<String>,
}

/// A [`ClientBinding`] reduced to three hashes (0: unknown), small and `Copy`
/// so that Verify's session cache can hold it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BindingDigest {
    pub device_id: u64,
    pub network: u64,
    pub user_agent_family: u64,
}

impl ClientBinding {
    pub fn digest(&self) -> BindingDigest {
        BindingDigest {
            device_id: digest(self.device_id.as_deref()),
            network: digest(self.network.as_deref()),
            user_agent_family: digest(self.user_agent_family.as_deref()),
        }
    }
}

/// FNV-1a: deterministic across processes and replicas; never 0 for a
/// value (0 means unknown).
fn digest(value: Option<&str>) -> u64 {
    let Some(value) = value else {
        return 0;
    };
    let hash = value
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    hash.max(1)
}

impl BindingPolicy {
    /// Whether anything is compared at all.
    pub fn is_active(&self) -> bool {
        self.mode != BindingMode::Off && self.attributes != BoundAttributes::NONE
    }

    /// The binding values of a client context.
    pub fn binding_of(&self, client: &ClientContext) -> ClientBinding {
        ClientBinding {
            device_id: client.device_id.clone(),
            network: client.ip_address.map(|ip| self.network(ip)),
            user_agent_family: client.user_agent.as_deref().map(user_agent_family),
        }
    }

    /// The network an address belongs to, as `address/prefix`.
    pub fn network(&self, ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => {
                let bits = self.ipv4_prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                format!("{}/{bits}", std::net::Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let bits = self.ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                format!("{}/{bits}", std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }

    /// Whether `presented` matches the session's `stored` binding on every
    /// bound attribute the session has.
    pub fn matches(&self, stored: BindingDigest, presented: BindingDigest) -> bool {
        let attributes = self.attributes;
        let holds = |bound: bool, stored: u64, presented: u64| !bound || stored == 0 || stored == presented;
        holds(attributes.device_id, stored.device_id, presented.device_id)
            && holds(attributes.ip_prefix, stored.network, presented.network)
            && holds(attributes.user_agent_family, stored.user_agent_family, presented.user_agent_family)
    }
}

/// The coarse family of a user agent: browser (or client library) family and
/// operating system family, such as "Firefox on Linux" or "okhttp on other".
/// Versions are left out, so that an update does not break the binding.
///
/// Written here rather than taken from a full user-agent parser: the binding
/// needs a dozen stable families, not a regular-expression database.
pub fn user_agent_family(user_agent: &str) -> String {
    let ua = user_agent.to_ascii_lowercase();
    let has = |needle: &str| ua.contains(needle);
    let browser = if has("edg/") || has("edge/") {
        "Edge"
    } else if has("opr/") || has("opera") {
        "Opera"
    } else if has("firefox/") || has("fxios/") {
        "Firefox"
    } else if has("chrome/") || has("crios/") || has("chromium/") {
        "Chrome"
    } else if has("safari/") {
        "Safari"
    } else if has("curl/") {
        "curl"
    } else if has("okhttp") {
        "okhttp"
    } else if has("python") {
        "Python"
    } else if has("go-http-client") {
        "Go"
    } else if has("mozilla/") {
        "Mozilla"
    } else {
        "other"
    };
    let os = if has("android") {
        "Android"
    } else if has("iphone") || has("ipad") || has("ios") {
        "iOS"
    } else if has("windows") {
        "Windows"
    } else if has("mac os") || has("macintosh") {
        "macOS"
    } else if has("cros") {
        "ChromeOS"
    } else if has("linux") || has("x11") {
        "Linux"
    } else {
        "other"
    };
    format!("{browser} on {os}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str, ua: &str, device: &str) -> ClientContext {
        ClientContext::parse(ip, ua, device).unwrap()
    }

    #[test]
    fn networks_are_prefixes() {
        let policy = BindingPolicy::default();
        assert_eq!(policy.network("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(policy.network("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::/64");
        let whole = BindingPolicy {
            ipv4_prefix: 32,
            ipv6_prefix: 0,
            ..policy
        };
        assert_eq!(whole.network("203.0.113.77".parse().unwrap()), "203.0.113.77/32");
        assert_eq!(whole.network("2001:db8::1".parse().unwrap()), "::/0");
    }

    #[test]
    fn user_agents_fold_into_families_without_versions() {
        let firefox_115 = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0";
        let firefox_128 = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(user_agent_family(firefox_115), "Firefox on Linux");
        assert_eq!(user_agent_family(firefox_115), user_agent_family(firefox_128));
        let chrome_android = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36";
        assert_eq!(user_agent_family(chrome_android), "Chrome on Android");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36 Edg/126.0";
        assert_eq!(user_agent_family(edge), "Edge on Windows");
        let safari =
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Version/17.5 Safari/604.1";
        assert_eq!(user_agent_family(safari), "Safari on iOS");
        assert_eq!(user_agent_family("curl/8.5.0"), "curl on other");
    }

    #[test]
    fn bound_attributes_the_session_has_must_match() {
        let policy = BindingPolicy::default();
        let stored = policy.binding_of(&client("203.0.113.7", "Firefox/115.0 (X11; Linux)", "laptop")).digest();
        let same = policy.binding_of(&client("203.0.113.200", "Firefox/128.0 (X11; Linux)", "laptop")).digest();
        assert!(policy.matches(stored, same), "same /24, same family, same device");
        for other in [
            client("198.51.100.7", "Firefox/115.0 (X11; Linux)", "laptop"),
            client("203.0.113.7", "Chrome/126.0 (Windows)", "laptop"),
            client("203.0.113.7", "Firefox/115.0 (X11; Linux)", "phone"),
            client("203.0.113.7", "Firefox/115.0 (X11; Linux)", ""),
        ] {
            assert!(!policy.matches(stored, policy.binding_of(&other).digest()), "{other:?}");
        }
        let unbound = policy.binding_of(&ClientContext::default()).digest();
        assert!(policy.matches(unbound, same), "a session without a value binds nothing");
    }

    #[test]
    fn only_chosen_attributes_are_compared() {
        let policy = BindingPolicy {
            attributes: BoundAttributes {
                device_id: true,
                ip_prefix: false,
                user_agent_family: false,
            },
            ..BindingPolicy::default()
        };
        let stored = policy.binding_of(&client("203.0.113.7", "curl/8", "laptop")).digest();
        let moved = policy.binding_of(&client("198.51.100.7", "Firefox/1", "laptop")).digest();
        assert!(policy.matches(stored, moved));
        assert!(!BindingPolicy::default().matches(stored, moved));
    }
}
