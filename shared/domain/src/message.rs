//! Messages between functions. Versioned by a `schema` tag so a consumer can refuse what it
//! does not know instead of misreading it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{ContactId, Interaction, InteractionId, InteractionKind, LeadId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "schema")]
pub enum InteractionMessage {
    /// An interaction has been stored and waits to be scored.
    #[serde(rename = "leadflow.interaction.v1")]
    V1(InteractionRef),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionRef {
    pub interaction_id: InteractionId,
    pub lead_id: LeadId,
    pub contact_id: ContactId,
    pub kind: InteractionKind,
    pub occurred_at: DateTime<Utc>,
}

impl InteractionMessage {
    pub fn for_interaction(i: &Interaction) -> Self {
        InteractionMessage::V1(InteractionRef {
            interaction_id: i.interaction_id,
            lead_id: i.lead_id,
            contact_id: i.contact_id,
            kind: i.kind.clone(),
            occurred_at: i.occurred_at,
        })
    }

    pub fn interaction_id(&self) -> InteractionId {
        match self {
            InteractionMessage::V1(r) => r.interaction_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_schema_tag() {
        let m = InteractionMessage::V1(InteractionRef {
            interaction_id: InteractionId::generate(),
            lead_id: LeadId::generate(),
            contact_id: ContactId::generate(),
            kind: InteractionKind::FormSubmitted,
            occurred_at: Utc::now(),
        });
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["schema"], "leadflow.interaction.v1");
        assert_eq!(json["kind"], "form_submitted");
        let back: InteractionMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        let unknown = serde_json::json!({"schema": "leadflow.interaction.v9"});
        assert!(serde_json::from_value::<InteractionMessage>(unknown).is_err());
    }
}
