use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// The kinds of prefixed ids the API hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Organization,
    Namespace,
    Bucket,
    Upload,
    Object,
    Batch,
    Task,
    ApiKey,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Organization => "org_",
            IdKind::Namespace => "ns_",
            IdKind::Bucket => "bkt_",
            IdKind::Upload => "upl_",
            IdKind::Object => "obj_",
            IdKind::Batch => "btch_",
            IdKind::Task => "task_",
            IdKind::ApiKey => "key_",
        }
    }

    /// Whether `id` has this kind's prefix and a well-formed token.
    pub fn matches(self, id: &str) -> bool {
        id.strip_prefix(self.prefix())
            .is_some_and(|token| token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// Declares an id newtype: a prefixed string as the API hands it out, stored as text.
/// It reads as a `&str` wherever one is expected, and is made only by [`generate`](UploadId::generate)
/// (a fresh id), by [`parse`](UploadId::parse) (a client's, checked), or by reading it back
/// from the database or a job message.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident => $kind:expr) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new, time-ordered id of this kind.
            pub fn generate() -> Self {
                $name(new_id($kind))
            }

            /// An id a client sent: `None` unless it has this kind's prefix and shape.
            pub fn parse(s: &str) -> Option<Self> {
                $kind.matches(s).then(|| $name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        // Hash and Eq are the string's, so a map keyed by ids is searched by `&str` too.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// An id as stored or as carried by a message, taken as it is.
        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// An upload: one file, from its presigned URL to its object.
    UploadId => IdKind::Upload
);
id_type!(
    /// A task clients poll: a confirmation, a batch confirmation or a batch submission.
    TaskId => IdKind::Task
);
id_type!(
    /// A bucket of a namespace.
    BucketId => IdKind::Bucket
);
id_type!(
    /// A namespace: where buckets, quotas and fair shares live.
    NamespaceId => IdKind::Namespace
);
id_type!(
    /// An organization: whose keys and rate limits these are.
    OrganizationId => IdKind::Organization
);
id_type!(
    /// A bucket object a confirmation creates.
    ObjectId => IdKind::Object
);
id_type!(
    /// A batch of objects for processing.
    BatchId => IdKind::Batch
);

/// A new time-ordered id (UUIDv7, so rows inserted together sit together in indexes).
pub fn new_id(kind: IdKind) -> String {
    format!("{}{}", kind.prefix(), uuid::Uuid::now_v7().simple())
}

/// A new secret API key: `sk_` and 256 random bits.
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("sk_{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_prefix_and_match() {
        for kind in [
            IdKind::Upload,
            IdKind::Task,
            IdKind::Batch,
            IdKind::Namespace,
        ] {
            let id = new_id(kind);
            assert!(id.starts_with(kind.prefix()));
            assert!(kind.matches(&id));
        }
        assert!(!IdKind::Upload.matches(&new_id(IdKind::Task)));
        assert!(!IdKind::Upload.matches("upl_../../etc"));
    }

    #[test]
    fn typed_ids_parse_only_their_kind() {
        let upload = UploadId::generate();
        assert!(upload.starts_with("upl_"));
        assert_eq!(UploadId::parse(&upload), Some(upload.clone()));
        assert_eq!(TaskId::parse(&upload), None);
        assert_eq!(UploadId::parse("upl_../../etc"), None);
        assert_eq!(serde_json::to_value(&upload).unwrap(), upload.as_str());
        let task: TaskId = serde_json::from_value(serde_json::json!(new_id(IdKind::Task))).unwrap();
        assert_eq!(task.to_string(), task.as_str());
    }

    #[test]
    fn api_keys_are_distinct() {
        let a = new_api_key();
        assert!(a.starts_with("sk_"));
        assert_eq!(a.len(), 3 + 43);
        assert_ne!(a, new_api_key());
    }
}
