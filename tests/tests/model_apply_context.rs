//! Model-mode apply plans for the largest files of the shared data
//! (dev-hard.jsonl, read in place, files up to ~5,700 lines): every region
//! the model would rewrite gets a prompt that, with its output bound, fits
//! the default model's context, windowing the file where the whole of it
//! does not fit. Planning runs the tokenizer and the merge, not the model.

use graft_engine::apply::{plan_model_apply, ApplyMode, ApplyRequest};
use graft_engine::model::gguf::GgufFile;
use graft_engine::tokenizer::Tokenizer;
use graft_grammars::Language;
use serde::Deserialize;

/// The fields of a case this test reads.
#[derive(Deserialize)]
struct Case {
    id: String,
    lang: String,
    original: String,
    update: String,
    #[serde(default)]
    instruction: Option<String>,
}

/// The default model's context window (SmolLM2-135M-Instruct).
const CONTEXT: usize = 8192;

/// Files at least this long count as large.
const LARGE_LINES: usize = 1500;

#[test]
fn every_region_of_the_large_dev_hard_files_fits_the_context() {
    let gguf = GgufFile::open(&graft_tests::default_model()).expect("the default model opens");
    let tokenizer = Tokenizer::from_gguf(&gguf).expect("its tokenizer loads");
    let hard = graft_tests::dev_jsonl().with_file_name("dev-hard.jsonl");
    let text = std::fs::read_to_string(&hard).unwrap_or_else(|e| panic!("{}: {e}", hard.display()));
    let (mut files, mut regions, mut windowed, mut longest) = (0, 0, 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Case = serde_json::from_str(line).expect("case parses");
        let lines = case.original.lines().count();
        if lines < LARGE_LINES {
            continue;
        }
        files += 1;
        longest = longest.max(lines);
        let request = ApplyRequest {
            original: &case.original,
            update: &case.update,
            instruction: case.instruction.as_deref(),
            language: Language::from_name(&case.lang),
            mode: ApplyMode::Model,
            whole_file: false,
        };
        let plans = plan_model_apply(&tokenizer, CONTEXT, &request).unwrap_or_else(|e| panic!("{}: {e}", case.id));
        assert!(!plans.is_empty(), "{}: no region planned", case.id);
        for plan in plans {
            regions += 1;
            windowed += usize::from(plan.window);
            let prompt =
                plan.prompt_tokens.unwrap_or_else(|| panic!("{}: region {:?} does not fit", case.id, plan.lines));
            assert!(prompt + plan.max_output <= CONTEXT, "{}: {prompt} + {} tokens", case.id, plan.max_output);
        }
    }
    println!("{files} files of {LARGE_LINES}+ lines (longest {longest}), {regions} regions, {windowed} windowed");
    assert!(files >= 5 && longest >= 5000, "the data has fewer large files than expected: {files}, longest {longest}");
    assert!(windowed > 0, "no large file needed a window: the windowing went untested");
}
