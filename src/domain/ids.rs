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
    fn api_keys_are_distinct() {
        let a = new_api_key();
        assert!(a.starts_with("sk_"));
        assert_eq!(a.len(), 3 + 43);
        assert_ne!(a, new_api_key());
    }
}
