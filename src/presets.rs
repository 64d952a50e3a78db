//! Platform presets (`route.preset`): default key sources, dedupe ids and
//! verification kind for Telegram, WhatsApp, Slack, Twilio and Discord.
//!
//! A preset only fills what the route leaves unset (`config` applies it),
//! so any default can be overridden key by key.

use serde::{Deserialize, Serialize};

use crate::verify::VerifyKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Telegram,
    Whatsapp,
    Slack,
    Twilio,
    Discord,
}

impl Preset {
    /// Key sources, most specific first. Telegram flows belong to a chat, so
    /// the chat id comes before the sender's id (absent in channels).
    pub fn key_sources(self) -> &'static [&'static str] {
        match self {
            Preset::Telegram => &[
                "json:/message/chat/id",
                "json:/edited_message/chat/id",
                "json:/callback_query/message/chat/id",
                "json:/callback_query/from/id",
                "json:/channel_post/chat/id",
                "json:/inline_query/from/id",
                "json:/chosen_inline_result/from/id",
            ],
            // One request may batch several messages; the first one's sender
            // keys the request (see README, Limits).
            Preset::Whatsapp => &[
                "json:/entry/0/changes/0/value/messages/0/from",
                "json:/entry/0/changes/0/value/statuses/0/recipient_id",
            ],
            // Events API (JSON), slash commands (form), interactivity (a
            // JSON document in the `payload` form field).
            Preset::Slack => &[
                "json:/event/user",
                "json:/event/channel",
                "form:user_id",
                "form:payload#/user/id",
            ],
            Preset::Twilio => &["form:From"],
            // Interactions: `member.user` in a guild, `user` in a DM.
            Preset::Discord => &["json:/member/user/id", "json:/user/id"],
        }
    }

    /// Dedupe id sources, first present wins.
    pub fn dedupe_sources(self) -> &'static [&'static str] {
        match self {
            Preset::Telegram => &["json:/update_id"],
            Preset::Whatsapp => &["json:/entry/0/changes/0/value/messages/0/id"],
            Preset::Slack => &[
                "json:/event_id",
                "form:trigger_id",
                "form:payload#/trigger_id",
            ],
            Preset::Twilio => &["form:MessageSid"],
            Preset::Discord => &["json:/id"],
        }
    }

    /// Every platform here signs its webhooks.
    pub fn verify_kind(self) -> VerifyKind {
        match self {
            Preset::Telegram => VerifyKind::Telegram,
            Preset::Whatsapp => VerifyKind::Meta,
            Preset::Slack => VerifyKind::Slack,
            Preset::Twilio => VerifyKind::Twilio,
            Preset::Discord => VerifyKind::Discord,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeySource;

    #[test]
    fn every_preset_source_parses() {
        for preset in [
            Preset::Telegram,
            Preset::Whatsapp,
            Preset::Slack,
            Preset::Twilio,
            Preset::Discord,
        ] {
            for source in preset.key_sources().iter().chain(preset.dedupe_sources()) {
                assert!(KeySource::parse(source).is_ok(), "{preset:?}: {source}");
            }
        }
    }
}
