//! Reading the header fields RFC 9111 decides by, strictly and pure: `Cache-Control` (and the
//! targeted `CDN-Cache-Control`, `Surrogate-Control`) as directives with case-insensitive names
//! and token or quoted-string arguments (RFC 9111 §5.2, RFC 9110 §5.6.2, §5.6.4), comma lists
//! that respect quotes (§5.6.1), delta-seconds (RFC 9111 §1.2.2) and HTTP-dates in their three
//! forms (RFC 9110 §5.6.7).

use std::time::SystemTime;

use http::HeaderMap;
use http::header::AsHeaderName;

/// The largest delta-seconds a cache needs to tell apart (RFC 9111 §1.2.2): bigger values are
/// read as this.
pub const MAX_DELTA: u64 = 1 << 31;

/// A field's comma-separated members, trimmed, empty ones left out; commas inside quoted
/// strings do not split.
pub fn list<K: AsHeaderName>(h: &HeaderMap, name: K) -> Vec<String> {
    let mut out = Vec::new();
    for v in h.get_all(name) {
        let s: String = v.as_bytes().iter().map(|&b| b as char).collect();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    push_member(&mut out, &s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        push_member(&mut out, &s[start..]);
    }
    out
}

fn push_member(out: &mut Vec<String>, m: &str) {
    let m = m.trim_matches([' ', '\t']);
    if !m.is_empty() {
        out.push(m.to_owned());
    }
}

/// A directive's argument as it reads: `None` without one, `Some(Err)` when malformed.
type Argument = Option<Result<String, ()>>;

/// The directives of a field, names lowercase, in order (repeats kept).
#[derive(Debug, Clone, Default)]
pub struct Directives {
    list: Vec<(String, Argument)>,
}

/// A delta-seconds argument, as every occurrence of its directive gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    /// The directive is not there.
    Absent,
    /// Every occurrence says this many seconds.
    Valid(u64),
    /// An occurrence without a valid number, or occurrences that disagree.
    Invalid,
}

impl Directives {
    /// The directives of every line of field `name`.
    pub fn of<K: AsHeaderName>(h: &HeaderMap, name: K) -> Directives {
        let list = list(h, name).iter().filter_map(|m| directive(m)).collect();
        Directives { list }
    }

    /// The directives of field `name` meant for every recipient or for `token`: a member
    /// `d;token` is `d` for that recipient only (`Surrogate-Control`, Edge Architecture 1.0).
    pub fn targeted<K: AsHeaderName>(h: &HeaderMap, name: K, token: &str) -> Directives {
        let list = list(h, name)
            .iter()
            .filter_map(|m| match m.rsplit_once(';') {
                Some((d, t)) if t.trim().eq_ignore_ascii_case(token) => directive(d.trim()),
                Some(_) => None,
                None => directive(m),
            })
            .collect();
        Directives { list }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether directive `name` (lowercase) is there.
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|(n, _)| n == name)
    }

    /// The first occurrence's argument: `Some(None)` when it has none, `Some(Some(arg))` when
    /// it has one (a malformed argument reads as the empty string).
    pub fn value(&self, name: &str) -> Option<Option<String>> {
        self.list
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone().map(|a| a.unwrap_or_default()))
    }

    /// Directive `name`'s delta-seconds.
    pub fn seconds(&self, name: &str) -> Seconds {
        let mut found = Seconds::Absent;
        for (_, arg) in self.list.iter().filter(|(n, _)| n == name) {
            let n = match arg {
                Some(Ok(a)) => delta_seconds(a.as_bytes()),
                _ => None,
            };
            found = match (found, n) {
                (_, None) => return Seconds::Invalid,
                (Seconds::Absent, Some(n)) => Seconds::Valid(n),
                (Seconds::Valid(m), Some(n)) if m == n => Seconds::Valid(m),
                _ => return Seconds::Invalid,
            };
        }
        found
    }

    /// The field names a qualified `name="a, b"` lists (for `private` and `no-cache`).
    pub fn field_names(&self, name: &str) -> Vec<String> {
        self.list
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, a)| a.clone()?.ok())
            .flat_map(|a| {
                a.split(',')
                    .map(|f| f.trim().to_ascii_lowercase())
                    .filter(|f| !f.is_empty())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// One member of a directives field: its name (lowercase) and argument; `None` when the name is
/// not a token.
fn directive(m: &str) -> Option<(String, Argument)> {
    let (name, arg) = match m.split_once('=') {
        Some((n, a)) => (n, Some(argument(a))),
        None => (m, None),
    };
    is_token(name).then(|| (name.to_ascii_lowercase(), arg))
}

/// A token (RFC 9110 §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A directive's argument: a token, or a quoted string unescaped.
fn argument(a: &str) -> Result<String, ()> {
    if let Some(rest) = a.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next().ok_or(())?),
                '"' => {
                    return if chars.next().is_none() {
                        Ok(out)
                    } else {
                        Err(())
                    };
                }
                c => out.push(c),
            }
        }
        return Err(());
    }
    if is_token(a) {
        Ok(a.to_owned())
    } else {
        Err(())
    }
}

/// delta-seconds: one or more digits and nothing else, read as at most [`MAX_DELTA`].
pub fn delta_seconds(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        b.iter()
            .try_fold(0u64, |n, &d| {
                let n = n * 10 + u64::from(d - b'0');
                (n <= MAX_DELTA).then_some(n)
            })
            .unwrap_or(MAX_DELTA),
    )
}

/// The date field `name` holds, when it has one value that is an HTTP-date: lines that repeat
/// the same value count as one; different values, or anything else, read as none.
pub fn one_date<K: AsHeaderName>(h: &HeaderMap, name: K) -> Option<SystemTime> {
    let mut vals = h.get_all(name).iter();
    let first = vals.next()?;
    if vals.any(|v| v != first) {
        return None;
    }
    http_date(first.to_str().ok()?)
}

/// An HTTP-date in any of its three forms (IMF-fixdate, RFC 850, asctime), exactly.
pub fn http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::CACHE_CONTROL;

    fn cc(lines: &[&str]) -> Directives {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
        }
        Directives::of(&h, CACHE_CONTROL)
    }

    #[test]
    fn names_are_case_insensitive_and_arguments_token_or_quoted() {
        let d = cc(&["No-StOrE, MAX-AGE=\"60\"", "private=\"a, b\""]);
        assert!(d.has("no-store"));
        assert_eq!(d.seconds("max-age"), Seconds::Valid(60));
        assert_eq!(d.field_names("private"), ["a", "b"]);
    }

    #[test]
    fn bad_or_conflicting_seconds_are_invalid_and_huge_ones_capped() {
        for bad in [
            "max-age=-1",
            "max-age=1.5",
            "max-age=",
            "max-age",
            "max-age= 1",
        ] {
            assert_eq!(cc(&[bad]).seconds("max-age"), Seconds::Invalid, "{bad}");
        }
        assert_eq!(
            cc(&["max-age=1, max-age=2"]).seconds("max-age"),
            Seconds::Invalid
        );
        assert_eq!(
            cc(&["max-age=5", "max-age=5"]).seconds("max-age"),
            Seconds::Valid(5)
        );
        assert_eq!(
            cc(&["max-age=99999999999999999999"]).seconds("max-age"),
            Seconds::Valid(MAX_DELTA)
        );
        assert_eq!(cc(&["public"]).seconds("max-age"), Seconds::Absent);
        assert!(!cc(&["max-age =5"]).has("max-age"), "no space before '='");
    }

    #[test]
    fn targeted_members_are_for_their_target_only() {
        let mut h = HeaderMap::new();
        h.insert(
            "surrogate-control",
            HeaderValue::from_static("max-age=60;pdist, no-store;other, foo"),
        );
        let d = Directives::targeted(&h, "surrogate-control", "pdist");
        assert_eq!(d.seconds("max-age"), Seconds::Valid(60));
        assert!(!d.has("no-store") && d.has("foo"));
    }

    #[test]
    fn lists_respect_quotes() {
        let mut h = HeaderMap::new();
        h.insert("x", HeaderValue::from_static(" a, \"b,c\" ,, d "));
        assert_eq!(list(&h, "x"), ["a", "\"b,c\"", "d"]);
    }

    #[test]
    fn http_dates_in_all_three_forms_and_nothing_else() {
        let t = http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "0",
            "",
        ] {
            assert_eq!(http_date(bad), None, "{bad:?}");
        }
    }
}
