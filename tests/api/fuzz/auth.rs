//! Credentials and namespaces, good and bad, and content types: the headers of a request.

use proptest::prelude::*;
use proptest::sample::select;
use reqwest::header::HeaderValue;

use super::Fixtures;

#[derive(Debug, Clone, Copy)]
pub(super) enum KeyFault {
    Basic,
    SchemeOnly,
    SchemeAndSpace,
    PrefixOnly,
    Unknown,
    LowerCaseScheme,
    TooLong,
    Suffixed,
    NonText,
    OtherScheme,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum NsFault {
    Empty,
    Unknown,
    OtherTenant,
    NonText,
    Traversal,
    Long,
    PercentNul,
    /// Valid: our namespace by id.
    ById,
    /// Valid: our namespace name with spaces around it.
    Padded,
}

impl NsFault {
    /// Names no namespace of the caller's organization.
    pub(super) fn unknown(self) -> bool {
        matches!(
            self,
            NsFault::Empty
                | NsFault::Unknown
                | NsFault::OtherTenant
                | NsFault::Traversal
                | NsFault::Long
                | NsFault::PercentNul
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Auth {
    Good,
    NoKey,
    BadKey(KeyFault),
    OtherOrgKey,
    NoNamespace,
    Namespace(NsFault),
}

pub(super) fn auth_strategy() -> BoxedStrategy<Auth> {
    let key_faults = vec![
        KeyFault::Basic,
        KeyFault::SchemeOnly,
        KeyFault::SchemeAndSpace,
        KeyFault::PrefixOnly,
        KeyFault::Unknown,
        KeyFault::LowerCaseScheme,
        KeyFault::TooLong,
        KeyFault::Suffixed,
        KeyFault::NonText,
        KeyFault::OtherScheme,
    ];
    let ns_faults = vec![
        NsFault::Empty,
        NsFault::Unknown,
        NsFault::OtherTenant,
        NsFault::NonText,
        NsFault::Traversal,
        NsFault::Long,
        NsFault::PercentNul,
        NsFault::ById,
        NsFault::Padded,
    ];
    prop_oneof![
        14 => Just(Auth::Good),
        1 => Just(Auth::NoKey),
        2 => select(key_faults).prop_map(Auth::BadKey),
        1 => Just(Auth::OtherOrgKey),
        1 => Just(Auth::NoNamespace),
        2 => select(ns_faults).prop_map(Auth::Namespace),
    ]
    .boxed()
}

pub(super) fn content_type_strategy() -> BoxedStrategy<Option<&'static str>> {
    prop_oneof![
        10 => Just(Some("application/json")),
        2 => Just(None),
        1 => select(vec![
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=utf-16",
            "application/xml",
            "",
            "*/*",
            "application/json\u{1}",
        ])
        .prop_map(Some),
    ]
    .boxed()
}

pub(super) fn key_header(fault: KeyFault, key: &str) -> HeaderValue {
    let bytes: Vec<u8> = match fault {
        KeyFault::Basic => b"Basic dXNlcjpwYXNz".to_vec(),
        KeyFault::SchemeOnly => b"Bearer".to_vec(),
        KeyFault::SchemeAndSpace => b"Bearer ".to_vec(),
        KeyFault::PrefixOnly => b"Bearer sk_".to_vec(),
        KeyFault::Unknown => b"Bearer sk_never_issued_0123456789".to_vec(),
        KeyFault::LowerCaseScheme => format!("bearer {key}").into_bytes(),
        KeyFault::TooLong => format!("Bearer sk_{}", "a".repeat(300)).into_bytes(),
        KeyFault::Suffixed => format!("Bearer {key}x").into_bytes(),
        KeyFault::NonText => {
            let mut v = format!("Bearer {key}").into_bytes();
            v.extend_from_slice(&[0xff, 0xfe, 0xe2, 0x80, 0xae]);
            v
        }
        KeyFault::OtherScheme => format!("Token {key}").into_bytes(),
    };
    HeaderValue::from_bytes(&bytes).expect("a valid header value")
}

pub(super) fn namespace_header(fault: NsFault, fx: &Fixtures) -> HeaderValue {
    let bytes: Vec<u8> = match fault {
        NsFault::Empty => Vec::new(),
        NsFault::Unknown => b"ns-never-created".to_vec(),
        NsFault::OtherTenant => fx.other_namespace.clone().into_bytes(),
        NsFault::NonText => vec![b'n', b's', 0xff, 0xfe, 0x80],
        NsFault::Traversal => format!("../{}", fx.namespace).into_bytes(),
        NsFault::Long => "n".repeat(5000).into_bytes(),
        NsFault::PercentNul => format!("{}%00", fx.namespace).into_bytes(),
        NsFault::ById => fx.namespace_id.clone().into_bytes(),
        NsFault::Padded => format!("  {}  ", fx.namespace).into_bytes(),
    };
    HeaderValue::from_bytes(&bytes).expect("a valid header value")
}
