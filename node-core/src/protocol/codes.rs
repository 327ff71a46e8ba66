//! Request codes (the `code` byte of a Request frame) and control codes (of a Control frame).
//!
//! Codes 1–15 are answered by every node; 16–47 belong to dht, 48–79 to logfiles, 80–111 to
//! queue (docs/protocol.md §5). Each kind's codes are one typed enum (`dht::DhtRequest`,
//! `logfiles::LogfilesRequest`, `queue::QueueRequest`), declared with `request_enum!` from a
//! single table of variants and codes, so the client and the nodes share one table and a node's
//! dispatch is an exhaustive `match`.

/// A request code. Kept as a newtype over `u8` rather than an enum because a node must be able to
/// receive codes it does not know and answer them with `UnsupportedRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestCode(pub u8);

impl RequestCode {
    pub const GET_VERSION: RequestCode = RequestCode(1);
    pub const GET_NUM_CONNECTIONS: RequestCode = RequestCode(2);
    pub const GET_STATS: RequestCode = RequestCode(3);

    /// Whether every node kind answers this code (the server core handles these itself).
    pub fn is_common(self) -> bool {
        (1..16).contains(&self.0)
    }

    /// The name of a common request, used in logs and stats.
    pub fn common_name(self) -> Option<&'static str> {
        match self {
            RequestCode::GET_VERSION => Some("GetVersion"),
            RequestCode::GET_NUM_CONNECTIONS => Some("GetNumConnections"),
            RequestCode::GET_STATS => Some("GetStats"),
            _ => None,
        }
    }
}

/// Declares a node kind's request enum from one table: each variant with its wire code. The
/// enum gets `ALL` (every variant, in code order), `from_code` (the one place a code becomes a
/// request), `code` and `name` (the variant's name, used in logs and stats), so no list of
/// codes is kept in step with another by hand. Rules about a request (administrative, opens a
/// stream) are exhaustive `match`es written beside the enum, so a new request must decide them.
macro_rules! request_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant = $code, )+
        }

        impl $name {
            /// Every request of the kind, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The request a code names, or `None` for a code this kind does not know (the
            /// node answers it UnsupportedRequest).
            pub const fn from_code(code: $crate::protocol::RequestCode) -> Option<$name> {
                match code.0 {
                    $( $code => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// Its wire code.
            pub const fn code(self) -> $crate::protocol::RequestCode {
                $crate::protocol::RequestCode(self as u8)
            }

            /// Its name, for logs and stats.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => stringify!($variant), )+
                }
            }
        }
    };
}
pub(crate) use request_enum;

/// A control code: flow control of a running stream (docs/protocol.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlCode {
    /// Body `u32 n`: the client can take `n` more Items.
    Credit = 1,
    /// Empty body: end the stream now.
    Stop = 2,
}

impl ControlCode {
    pub fn from_u8(code: u8) -> Option<ControlCode> {
        match code {
            1 => Some(ControlCode::Credit),
            2 => Some(ControlCode::Stop),
            _ => None,
        }
    }
}

/// Items of credit a stream starts with, before the client grants any.
pub const INITIAL_STREAM_CREDIT: u32 = 4;
/// The most credit a stream can hold; grants beyond it are capped.
pub const MAX_STREAM_CREDIT: u32 = 1 << 20;
