//! Error messages that say the cause once.

use std::error::Error;

/// `err` and its causes joined by `: `, each said once: libraries often repeat their cause in
/// their own message (`… (os error 2): No such file or directory (os error 2)`), and some say
/// little without it (`client error (Connect)`, whose cause is `Connection refused`).
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer says {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Terse(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(chain(&Repeats(io())), "outer says Connection refused");
        assert_eq!(
            chain(&Terse(io())),
            "client error (Connect): Connection refused"
        );
    }
}
