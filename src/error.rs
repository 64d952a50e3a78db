//! What the crate's error types share: the cause an error keeps (boxed,
//! its own sources included, never flattened into text) and the one line
//! a log prints for an error and its sources.

use std::error::Error;

/// The error behind another, kept whole.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// An error and its sources on one line (`a: b: c`), each said once: a
/// source whose message the line already holds (an error that prints its
/// source) is not repeated.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let said = e.to_string();
        if !text.contains(&said) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Prints(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Keeps(#[source] std::io::Error);

    #[test]
    fn every_source_is_said_once() {
        let io = || std::io::Error::other("disk gone");
        assert_eq!(chain(&Prints(io())), "outer: disk gone");
        assert_eq!(chain(&Keeps(io())), "outer: disk gone");
    }
}
