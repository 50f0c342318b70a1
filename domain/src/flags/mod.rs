//! Feature flags, evaluated exactly as Unleash evaluates them.
//!
//! The input is an Unleash `/api/client/features` payload (`model`), compiled once into a
//! `FeatureSet`: regexes, CIDR ranges, versions, times, numbers and user-id lists are parsed
//! up front, so that evaluating a flag for a `Context` only reads the context. The rules follow
//! Unleash's client specification (the `@unleash/client-specification` suite runs against this
//! module in `tests/flags_client_spec.rs`) and, where the specification is silent, Unleash's own
//! engine (yggdrasil, the core of Unleash Edge and the current SDKs), which
//! `tests/flags_differential` compares this module with on generated flags and contexts:
//!
//! ```json
//! {"version": 2,
//!  "features": [{"name": "new-checkout", "enabled": true,
//!    "strategies": [{"name": "flexibleRollout",
//!                    "parameters": {"rollout": "25", "stickiness": "default", "groupId": "new-checkout"},
//!                    "constraints": [{"contextName": "environment", "operator": "IN", "values": ["production"]}],
//!                    "segments": [1]}],
//!    "variants": [{"name": "blue", "weight": 500, "payload": {"type": "string", "value": "b"}},
//!                 {"name": "green", "weight": 500}],
//!    "dependencies": [{"feature": "payments-v2"}]}],
//!  "segments": [{"id": 1, "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]}
//! ```
//!
//! - A flag is on when it is enabled, its parents are in the required state, and it has no
//!   strategies or any strategy matches (all constraints, its segments' too, and its rule).
//! - Users are bucketed with murmur3 (`hash`), so a user gets the same rollout bucket and variant
//!   here as from any Unleash SDK or Unleash Edge.
//! - What Flightdeck cannot evaluate (custom strategies, unknown operators, bad operands) never
//!   matches and is listed in `FeatureSet::warnings`.
//! - Each `Evaluation` carries an OFREP `Reason`.

pub mod change;
pub mod change_state;
mod constraint;
mod context;
pub mod definition;
pub mod diff;
mod evaluate;
mod hash;
pub mod import;
pub mod model;
pub mod page;
pub mod sdk_token;
mod set;
pub mod snapshot;
pub mod store;
mod strategy;
mod variant;

pub use context::Context;
pub use evaluate::{Evaluation, Reason};
pub use model::{ClientFeatures, ClientFeaturesDelta, Payload, PayloadKind};
pub use sdk_token::{LiveSdkToken, SdkTokenError, SdkTokens};
pub use set::{DefinitionProblem, FeatureSet, FlagInfo, FlagWarning};
pub use snapshot::{
    Restored, Snapshot, SnapshotError, SnapshotInfo, SnapshotPage, SnapshotQuery, Versioned,
};
pub use store::FlagStore;
pub use variant::VariantResult;
