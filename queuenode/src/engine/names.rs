//! Storage names: `channel` (a channel without subscribers), `subscriber@channel` and
//! `@channel` (the default subscriber), as in the reference (`queue.md` §5.1). Channel and
//! subscriber parts are ASCII letters, digits, `_` and `-`; the channel part is 1 to
//! [`MAX_NAME_BYTES`] bytes, the subscriber part 0 to [`MAX_NAME_BYTES`]. The storage name is also
//! the ring's file name (plus `.ring`), so nothing else may appear in it.

pub use node_core::protocol::queue::{valid_channel_name, valid_subscriber_name};

/// Longest channel or subscriber part (the protocol's limit).
pub const MAX_NAME_BYTES: usize = node_core::protocol::queue::MAX_CHANNEL_NAME_LEN;

/// Splits a storage name at its first `@`: `(Some(subscriber), channel)` or `(None, channel)`.
pub fn split_storage_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once('@') {
        Some((subscriber, channel)) => (Some(subscriber), channel),
        None => (None, name),
    }
}

/// A valid storage name: a channel name, optionally preceded by `subscriber@`.
pub fn valid_storage_name(name: &str) -> bool {
    let (subscriber, channel) = split_storage_name(name);
    valid_channel_name(channel) && subscriber.is_none_or(valid_subscriber_name)
}

/// The storage name of `subscriber` (None = no subscribers) of `channel`.
pub fn storage_name(subscriber: Option<&str>, channel: &str) -> String {
    match subscriber {
        Some(subscriber) => format!("{subscriber}@{channel}"),
        None => channel.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_follows_the_reference() {
        assert_eq!(split_storage_name("hello@world"), (Some("hello"), "world"));
        assert_eq!(split_storage_name("@world"), (Some(""), "world"));
        assert_eq!(split_storage_name("hello_world"), (None, "hello_world"));
        assert_eq!(split_storage_name("hello@"), (Some("hello"), ""));
        assert_eq!(split_storage_name("@"), (Some(""), ""));
        assert_eq!(split_storage_name(""), (None, ""));
    }

    #[test]
    fn storage_names_follow_the_reference_dump_name_rules() {
        for good in [
            "helloworld",
            "hello_world",
            "hello@world",
            "@world",
            "_world",
            "a-b",
        ] {
            assert!(valid_storage_name(good), "{good}");
        }
        let long = "x".repeat(101);
        for bad in [
            "hello.world",
            "hello:world",
            "hello@wor@ld",
            "@hello@world",
            "hello@",
            "@",
            "",
            "../x",
            long.as_str(),
        ] {
            assert!(!valid_storage_name(bad), "{bad}");
        }
        assert_eq!(storage_name(Some(""), "ch"), "@ch");
        assert_eq!(storage_name(None, "ch"), "ch");
    }
}
