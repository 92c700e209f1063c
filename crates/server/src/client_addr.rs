//! Who the client is: the TCP peer, or, behind a trusted reverse proxy, the address it forwards
//! (`X-Forwarded-For`, RFC 7239 `Forwarded`) and whether it was reached over HTTPS; and the unit
//! per-client limits count in (an IPv4 address or an IPv6 /64).
//!
//! Forwarded headers are believed only when the TCP peer is inside `--trusted-proxies`, because
//! anyone else can write them. Each proxy appends the address it saw, so the list is read from the
//! right, skipping trusted proxies; the first address that is not one is the client. Entries left
//! of it were written by the client and are never believed.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};

/// At most this many forwarded entries are read from the right: more proxies than this in front of
/// one server is not a deployment, and the bound keeps a header of thousands of entries cheap.
const MAX_HOPS: usize = 16;

/// The request's client as far as this server can know it; in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// A trusted proxy said the client reached it over HTTPS (`X-Forwarded-Proto: https` or
    /// `Forwarded: proto=https`); for Secure cookies and public URLs.
    pub https: bool,
}

/// An IP network, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(net)), self.prefix, 32) == mask(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(net), self.prefix, 128) == mask(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-wide address.
fn mask(value: u128, prefix: u8, bits: u8) -> u128 {
    let keep = u32::from(bits.min(prefix));
    if keep == 0 { 0 } else { value & (u128::MAX << (u32::from(bits) - keep)) }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = text.split_once('/').map_or((text, None), |(a, p)| (a, Some(p)));
        let network: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not a network like 10.0.0.0/8"))?;
        let network = network.to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(|| format!("{text:?}: bad prefix length"))?
            }
        };
        Ok(Cidr { network, prefix })
    }
}

/// The networks whose forwarded headers are believed; empty (the default) believes none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of networks; an empty string is the empty list.
    fn from_str(list: &str) -> Result<TrustedProxies, String> {
        list.split(',').filter(|n| !n.trim().is_empty()).map(str::parse).collect::<Result<_, _>>().map(TrustedProxies)
    }
}

/// The client of a request from `peer` with `headers`. Pure: the whole policy is here.
///
/// `X-Forwarded-For` is preferred over `Forwarded` when both are present: it is what Caddy and
/// nginx write, and a proxy passes a header it does not write through unchanged, so the client
/// could have written it. An entry that is not an address (`unknown`, an obfuscated name, garbage)
/// ends the walk: nothing left of it can be placed, so the last trusted hop is the client.
pub fn client_addr(peer: IpAddr, trusted: &TrustedProxies, headers: &HeaderMap) -> ClientAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return ClientAddr { ip: peer, https: false };
    }
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let xff = values("x-forwarded-for");
    let forwarded = values("forwarded");
    let elements: Vec<Element> = if !xff.is_empty() {
        xff.iter().flat_map(|v| v.split(',')).map(|e| Element { for_: parse_node(e), proto: None }).collect()
    } else {
        forwarded.iter().flat_map(|v| split_outside_quotes(v, ',')).map(|e| parse_element(&e)).collect()
    };
    let mut ip = peer;
    for element in elements.iter().rev().take(MAX_HOPS) {
        match element.for_ {
            Some(hop) if trusted.contains(hop) => ip = hop,
            Some(hop) => {
                ip = hop;
                break;
            }
            None => break,
        }
    }
    // The proto the nearest proxy saw: the right-most one written.
    let proto = values("x-forwarded-proto")
        .iter()
        .flat_map(|v| v.split(','))
        .next_back()
        .map(|p| p.trim().to_owned())
        .or_else(|| elements.iter().rev().find_map(|e| e.proto.clone()));
    ClientAddr { ip, https: proto.is_some_and(|p| p.eq_ignore_ascii_case("https")) }
}

/// One hop of a forwarded list: its `for` address (if it is one) and `proto`.
struct Element {
    for_: Option<IpAddr>,
    proto: Option<String>,
}

/// `for=...;proto=...;by=...` (RFC 7239 section 4); names are case-insensitive, values may be quoted.
fn parse_element(element: &str) -> Element {
    let mut parsed = Element { for_: None, proto: None };
    for pair in split_outside_quotes(element, ';') {
        let Some((name, value)) = pair.split_once('=') else { continue };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        match name.trim().to_ascii_lowercase().as_str() {
            "for" => parsed.for_ = parse_node(value),
            "proto" => parsed.proto = Some(value.to_owned()),
            _ => {}
        }
    }
    parsed
}

/// Splits on `sep` except inside double quotes (an IPv6 `for` with a port is quoted).
fn split_outside_quotes(text: &str, sep: char) -> Vec<String> {
    let (mut parts, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c == sep && !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let v6 = node.strip_prefix('[')?.strip_suffix(']')?;
    v6.parse::<Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The unit one per-client limit applies to: an IPv4 address, or an IPv6 /64, the smallest block a
/// single customer is usually given (a limit per IPv6 address would be no limit). IPv4-mapped
/// IPv6 is IPv4.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

/// Puts the request's [`ClientAddr`] into its extensions (a `map_request` layer before the request
/// span), so logs, rate limits and handlers all see the same client.
pub fn tag<B>(trusted: &TrustedProxies, mut req: Request<B>) -> Request<B> {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = client_addr(peer.ip(), trusted, req.headers());
        req.extensions_mut().insert(client);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client of a request from `peer` with `headers` (name, value), behind proxies `10.0.0.0/8`
    /// and `2001:db8:ffff::/48`: `(ip, https)`.
    fn check(peer: &str, headers: &[(&str, &str)], expected: (&str, bool)) {
        let trusted: TrustedProxies = "10.0.0.0/8, 2001:db8:ffff::/48".parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let got = client_addr(peer.parse().unwrap(), &trusted, &map);
        assert_eq!((got.ip, got.https), (expected.0.parse().unwrap(), expected.1), "{peer} {headers:?}");
    }

    #[test]
    fn forwarded_headers_are_believed_only_from_trusted_proxies() {
        let xff = "x-forwarded-for";
        // Untrusted peer: every header ignored.
        check("203.0.113.9", &[(xff, "198.51.100.1"), ("x-forwarded-proto", "https")], ("203.0.113.9", false));
        check("203.0.113.9", &[("forwarded", "for=198.51.100.1;proto=https")], ("203.0.113.9", false));
        // Trusted peer without headers: the peer.
        check("10.0.0.2", &[], ("10.0.0.2", false));
        // One proxy; a chain of trusted proxies; the client's own left-most entries are spoofed.
        check("10.0.0.2", &[(xff, "198.51.100.1")], ("198.51.100.1", false));
        check("10.0.0.2", &[(xff, "198.51.100.1, 10.1.1.1, 10.2.2.2")], ("198.51.100.1", false));
        check("10.0.0.2", &[(xff, "1.1.1.1, 6.6.6.6, 198.51.100.1")], ("198.51.100.1", false));
        check("10.0.0.2", &[(xff, "1.1.1.1"), (xff, "198.51.100.1, 10.0.0.5")], ("198.51.100.1", false));
        // Only trusted hops: the farthest of them.
        check("10.0.0.2", &[(xff, "10.9.9.9, 10.1.1.1")], ("10.9.9.9", false));
        // Ports, brackets, IPv6 and IPv4-mapped forms.
        check("10.0.0.2", &[(xff, "198.51.100.1:5000")], ("198.51.100.1", false));
        check("10.0.0.2", &[(xff, "2001:db8::1")], ("2001:db8::1", false));
        check("10.0.0.2", &[(xff, "[2001:db8::1]:443")], ("2001:db8::1", false));
        check("10.0.0.2", &[(xff, "::ffff:198.51.100.1")], ("198.51.100.1", false));
        check("::ffff:10.0.0.2", &[(xff, "198.51.100.1")], ("198.51.100.1", false));
        check("2001:db8:ffff::5", &[(xff, "[2001:db8::1]")], ("2001:db8::1", false));
        // RFC 7239, quoted and not, case-insensitive names, several elements and lines.
        check("10.0.0.2", &[("forwarded", "for=198.51.100.1")], ("198.51.100.1", false));
        check("10.0.0.2", &[("forwarded", "for=\"[2001:db8::1]:443\";proto=https")], ("2001:db8::1", true));
        check(
            "10.0.0.2",
            &[("forwarded", "For=\"198.51.100.1:80\";by=10.0.0.2, for=10.3.3.3")],
            ("198.51.100.1", false),
        );
        check("10.0.0.2", &[("forwarded", "for=6.6.6.6"), ("forwarded", "for=198.51.100.1")], ("198.51.100.1", false));
        check("10.0.0.2", &[("forwarded", "for=\"6.6.6.6,x\", for=198.51.100.1")], ("198.51.100.1", false));
        // X-Forwarded-For wins over a Forwarded the proxy passed through from the client.
        check("10.0.0.2", &[("forwarded", "for=6.6.6.6"), (xff, "198.51.100.1")], ("198.51.100.1", false));
        // Garbage, `unknown` and obfuscated names end the walk at the last trusted hop.
        check("10.0.0.2", &[(xff, "not an ip")], ("10.0.0.2", false));
        check("10.0.0.2", &[(xff, "198.51.100.1, garbage, 10.1.1.1")], ("10.1.1.1", false));
        check("10.0.0.2", &[(xff, "")], ("10.0.0.2", false));
        check("10.0.0.2", &[("forwarded", "for=unknown")], ("10.0.0.2", false));
        check("10.0.0.2", &[("forwarded", "for=_hidden, for=10.4.4.4")], ("10.4.4.4", false));
        check("10.0.0.2", &[("forwarded", "proto=https")], ("10.0.0.2", true));
        check("10.0.0.2", &[(xff, "[2001:db8::1")], ("10.0.0.2", false));
        // Too many hops: only the right-most MAX_HOPS are read.
        let many = vec!["10.7.7.7"; MAX_HOPS].join(",");
        check("10.0.0.2", &[(xff, &format!("198.51.100.1, {many}"))], ("10.7.7.7", false));
        let fewer = vec!["10.7.7.7"; MAX_HOPS - 1].join(",");
        check("10.0.0.2", &[(xff, &format!("198.51.100.1, {fewer}"))], ("198.51.100.1", false));
        // The proto: X-Forwarded-Proto's right-most value, or the Forwarded one.
        check("10.0.0.2", &[(xff, "198.51.100.1"), ("x-forwarded-proto", "HTTPS")], ("198.51.100.1", true));
        check("10.0.0.2", &[("x-forwarded-proto", "https, http")], ("10.0.0.2", false));
        check("10.0.0.2", &[("x-forwarded-proto", "http")], ("10.0.0.2", false));
    }

    #[test]
    fn networks_parse_and_contain() {
        let nets: TrustedProxies = "127.0.0.1/32, 10.0.0.0/8,::1,2001:db8::/32,0.0.0.0/0".parse().unwrap();
        assert_eq!(nets.0.len(), 5);
        for (net, ip, inside) in [
            ("127.0.0.1/32", "127.0.0.1", true),
            ("127.0.0.1/32", "127.0.0.2", false),
            ("127.0.0.1/32", "::ffff:127.0.0.1", true),
            ("10.0.0.0/8", "10.255.0.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("::1", "::1", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("0.0.0.0/0", "203.0.113.1", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::/0", "2001:db8::1", true),
        ] {
            assert_eq!(net.parse::<Cidr>().unwrap().contains(ip.parse().unwrap()), inside, "{net} {ip}");
        }
        assert_eq!("".parse::<TrustedProxies>().unwrap(), TrustedProxies::default());
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "proxy", "10.0.0.0/x"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        for (ip, key) in [
            ("203.0.113.7", "203.0.113.7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("2001:db8::1", "2001:db8::"),
            ("2001:db8::ffff:1:2", "2001:db8::"),
            ("2001:db8:0:1::1", "2001:db8:0:1::"),
        ] {
            assert_eq!(address_key(ip.parse().unwrap()), key.parse::<IpAddr>().unwrap(), "{ip}");
        }
    }
}
