//! The host cost of drafting with [`PromptLookup`]: one index build over a
//! 1,300-token prompt (original + update), then `propose` a step while the
//! output grows by accepted drafts to 256 tokens, looping with a period of
//! 40 tokens (as the untuned default model does on whole-file apply
//! prompts). Prints the time of a build and of a `propose` call.
//!
//!     cargo run --release -p graft-engine --example lookup_cost

use std::time::Instant;

use graft_engine::decode::draft::DEFAULT_MIN_NGRAM;
use graft_engine::decode::{Drafter, PromptLookup};

/// Generations timed; each gets its own drafter.
const GENERATIONS: usize = 200;
/// Tokens a step adds to the output besides the pending one, at most.
const ACCEPTED_PER_STEP: usize = 8;
/// Draft width asked for.
const WIDTH: usize = 64;

/// Deterministic pseudo-random tokens (xorshift) below a 5,000-token
/// vocabulary, so n-grams of the prompt rarely repeat.
fn tokens(seed: &mut u64, count: usize) -> Vec<u32> {
    (0..count)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed % 5000) as u32
        })
        .collect()
}

fn main() {
    let mut seed = 12345u64;
    let sources = [tokens(&mut seed, 1100), tokens(&mut seed, 200)];
    let period = tokens(&mut seed, 40);
    let output: Vec<u32> = (0..256).map(|i| period[i % period.len()]).collect();

    let started = Instant::now();
    let mut drafters: Vec<PromptLookup> =
        (0..GENERATIONS).map(|_| PromptLookup::new(&sources, DEFAULT_MIN_NGRAM)).collect();
    let build_us = started.elapsed().as_secs_f64() * 1e6 / GENERATIONS as f64;

    let started = Instant::now();
    let mut calls = 0usize;
    for drafter in &mut drafters {
        let mut len = 1;
        while len < output.len() {
            let draft = drafter.propose(&output[..len], WIDTH);
            calls += 1;
            len += 1 + draft.len().min(ACCEPTED_PER_STEP);
        }
    }
    let propose_us = started.elapsed().as_secs_f64() * 1e6 / calls as f64;
    println!("index build {build_us:.1} us (once a generation); propose {propose_us:.2} us a call ({calls} calls)");
}
