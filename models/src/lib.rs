//! The trained policies sparkpilot deploys, embedded as bytes.
//!
//! The ONNX files live in this crate's folder beside their cards (`scaling-ppo.md`, `meta-td3.md`),
//! which say the command that trained each one. Retraining
//! overwrites the file here and the next build embeds it; a deployed function can still load another
//! file at run time (`SPARKPILOT_SCALING_MODEL`, `SPARKPILOT_META_MODEL`).
//!
//! ```
//! // ONNX files are protobuf messages; field 1 (ir_version) is a varint, so the first byte is 0x08.
//! assert_eq!(models::SCALING_PPO[0], 0x08);
//! assert_eq!(models::META_TD3[0], 0x08);
//! ```

/// The scaling policy (PPO) scaling-decision runs: observation in, executors, memory, codec, disk and
/// shuffle tier out. Card: `scaling-ppo.md`.
pub const SCALING_PPO: &[u8] = include_bytes!("../scaling-ppo.onnx");

/// The meta-controller (TD3) meta-weights runs: scenario context in, cost and latency weights out.
/// Card: `meta-td3.md`.
pub const META_TD3: &[u8] = include_bytes!("../meta-td3.onnx");
