//! LLaMA-family decoder on burn.
