//! Byte-for-byte comparisons that say what differs. Pure.

/// How `theirs` differs from `ours` (both issuer URLs), naming scheme, host, port, path and
/// trailing-slash differences; `None` when they are equal byte for byte.
pub fn issuer_difference(ours: &str, theirs: &str) -> Option<String> {
    if ours == theirs {
        return None;
    }
    let (a, b) = (Parts::of(ours), Parts::of(theirs));
    let mut differences = Vec::new();
    if a.scheme != b.scheme {
        differences.push(format!("scheme {:?} vs {:?}", a.scheme, b.scheme));
    }
    if a.host != b.host {
        let case = if a.host.eq_ignore_ascii_case(b.host) {
            " (only in letter case, which IAM and STS compare exactly)"
        } else {
            ""
        };
        differences.push(format!("host {:?} vs {:?}{case}", a.host, b.host));
    }
    if a.port != b.port {
        differences.push(format!("port {:?} vs {:?}", a.port, b.port));
    }
    let (path_a, path_b) = (a.path.trim_end_matches('/'), b.path.trim_end_matches('/'));
    if path_a != path_b {
        differences.push(format!("path {:?} vs {:?}", a.path, b.path));
    } else if a.path != b.path {
        let (with, without) = if a.path.ends_with('/') {
            (ours, theirs)
        } else {
            (theirs, ours)
        };
        differences.push(format!(
            "trailing slash: {with:?} has one, {without:?} does not"
        ));
    }
    if differences.is_empty() {
        differences.push(format!("{ours:?} vs {theirs:?}"));
    }
    Some(differences.join("; "))
}

struct Parts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: &'a str,
    path: &'a str,
}

impl<'a> Parts<'a> {
    fn of(url: &'a str) -> Self {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port),
            _ => (authority, ""),
        };
        Self {
            scheme,
            host,
            port,
            path,
        }
    }
}

/// The first character of `value` that cannot be seen or is easily mistaken (whitespace,
/// control, zero-width or non-ASCII), with its position; `None` when there is none.
pub fn invisible(value: &str) -> Option<String> {
    value
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
        .map(|(i, c)| format!("U+{:04X} at character {}", c as u32, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_difference_is_named() {
        assert_eq!(
            issuer_difference("https://a.example", "https://a.example"),
            None
        );
        assert_eq!(
            issuer_difference("https://a.example/", "https://a.example").unwrap(),
            "trailing slash: \"https://a.example/\" has one, \"https://a.example\" does not"
        );
        assert_eq!(
            issuer_difference("https://a.example", "http://a.example").unwrap(),
            "scheme \"https\" vs \"http\""
        );
        assert!(
            issuer_difference("https://A.example", "https://a.example")
                .unwrap()
                .contains("only in letter case")
        );
        assert_eq!(
            issuer_difference("https://a.example/x", "https://b.example:8443/y").unwrap(),
            "host \"a.example\" vs \"b.example\"; port \"\" vs \"8443\"; path \"/x\" vs \"/y\""
        );
    }

    #[test]
    fn invisible_characters_are_found() {
        assert_eq!(invisible("sts.amazonaws.com"), None);
        assert_eq!(
            invisible("sts.amazonaws.com\u{200b}").unwrap(),
            "U+200B at character 18"
        );
        assert_eq!(invisible(" sts").unwrap(), "U+0020 at character 1");
    }
}
