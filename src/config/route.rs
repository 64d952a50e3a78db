//! `[[route]]` tables: path, namespace, key and dedupe sources, preset and
//! `[route.verify]`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{OnMissingKey, Secret, VerifyKind};
use crate::key::KeySource;
use crate::presets::Preset;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix; the longest matching prefix wins.
    pub path: String,
    /// Key namespace: conversations of different routes never share state.
    pub namespace: String,
    /// Key sources (one string or a list), first present wins.
    #[serde(default, deserialize_with = "one_or_many")]
    pub key: Vec<KeySource>,
    /// Dedupe id sources (one string or a list), first present wins.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dedupe: Vec<KeySource>,
    /// A request without a key: "passthrough" (forwarded without state) or "reject" (400).
    #[serde(default)]
    pub on_missing_key: OnMissingKey,
    /// Platform defaults for key, dedupe and verification: telegram, whatsapp, slack, twilio, discord.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// A `[route.verify]` table, or `"none"` to accept unverified
    /// requests on a listener that is not loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<RouteVerify>,
    /// JSON Schema (2020-12) file every reported snapshot must match; one that does not is not stored (the old one stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<std::path::PathBuf>,
    /// A `[route.transitions]` table: the edges a state field may move along; a snapshot moving it otherwise is not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitions: Option<crate::rules::TransitionsConfig>,
    /// This route's conversations live this long without a request (sliding), instead of `store.ttl`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<std::time::Duration>,
    /// Members (JSON pointers) a clear keeps: the stored snapshot becomes just these, e.g. `["/member_id"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_on_clear: Vec<String>,
    /// How long a deferred turn (the bot answered `X-Statehold-Deferred: 1`) waits for its late report (`POST /v1/turns/<token>`) before the turn is released and the snapshot kept: default 30s (or `store.lock_lease` when longer), at most 15m, at least `store.lock_lease`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub report_timeout: Option<std::time::Duration>,
}

/// `route.report_timeout`'s default (or `store.lock_lease` when longer).
pub const DEFAULT_REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest `route.report_timeout` allowed.
pub const MAX_REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl RouteConfig {
    /// The route's report timeout: as set, else the default (never
    /// shorter than a lease).
    pub fn report_timeout(&self, lock_lease: std::time::Duration) -> std::time::Duration {
        self.report_timeout
            .unwrap_or_else(|| DEFAULT_REPORT_TIMEOUT.max(lock_lease))
    }
}

impl RouteConfig {
    /// The route's snapshot rules, compiled (the schema file is read).
    pub fn rules(&self) -> Result<crate::rules::Rules, crate::rules::RulesError> {
        crate::rules::Rules::new(
            self.schema.as_deref(),
            self.transitions.as_ref(),
            &self.keep_on_clear,
        )
    }

    /// Fills the route's unset fields with this platform's defaults.
    pub(super) fn apply_preset(&mut self, preset: Preset) {
        let route = self;
        // Preset sources are constants, each parsed by a unit test.
        let parse = |sources: &[&str]| -> Vec<KeySource> {
            sources
                .iter()
                .filter_map(|s| KeySource::parse(s).ok())
                .collect()
        };
        if route.key.is_empty() {
            route.key = parse(preset.key_sources());
        }
        if route.dedupe.is_empty() {
            route.dedupe = parse(preset.dedupe_sources());
        }
        if let Some(RouteVerify::Check(verify)) = route.verify.as_mut() {
            if verify.kind.is_none() {
                verify.kind = Some(preset.verify_kind());
            }
        }
    }
}

/// `route.verify`: checked, or explicitly none.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteVerify {
    None,
    Check(VerifyConfig),
}

impl RouteVerify {
    pub fn check(&self) -> Option<&VerifyConfig> {
        match self {
            RouteVerify::Check(v) => Some(v),
            RouteVerify::None => None,
        }
    }
}

impl<'de> Deserialize<'de> for RouteVerify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RouteVerify;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [route.verify] table or \"none\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RouteVerify, E> {
                match v {
                    "none" => Ok(RouteVerify::None),
                    _ => Err(E::custom(format!(
                        "`{v}`: expected a [route.verify] table or \"none\""
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RouteVerify, A::Error> {
                VerifyConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RouteVerify::Check)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for RouteVerify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RouteVerify::None => s.serialize_str("none"),
            RouteVerify::Check(v) => v.serialize(s),
        }
    }
}

/// One key source or a list of them. A visitor rather than an untagged
/// enum, so that an error in a list names its index (`route[0].key[1]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<KeySource>, D::Error> {
    struct Sources;
    impl<'de> serde::de::Visitor<'de> for Sources {
        type Value = Vec<KeySource>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key source or a list of key sources")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            KeySource::parse(text).map(|s| vec![s]).map_err(E::custom)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(source) = seq.next_element::<KeySource>()? {
                out.push(source);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Sources)
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Defaults to the route's preset platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<VerifyKind>,
    /// Signing secret (Telegram secret token, Meta app secret, Slack signing secret, Twilio auth token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Environment variable holding `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Twilio: the public URL the platform calls for this route's path
    /// (e.g. `https://bot.example.com/twilio`); deeper paths and the query
    /// are appended as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Discord: the application's Ed25519 public key (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Meta: the handshake's `hub.verify_token` (checked when set; else the
    /// bot checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<Secret>,
    /// Environment variable holding `verify_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token_env: Option<String>,
}
