//! The price table: USD per token for each model, to estimate `cost_usd` from token usage.
//!
//! The table ships with the binary (`data/prices.json`, USD per million tokens) and a file named
//! by `prices` in the config adds or replaces entries in the same format. A model name matches
//! the longest key it contains (`claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`), after
//! dropping a provider prefix (`google/`, `openai/`, …). An unknown model has no price: its
//! tokens are still counted and its cost is `null`.
//!
//! The formula follows the widely used ccusage, so that figures agree: each field is charged at
//! its rate, and where a model has a long-context tier the tokens of a field beyond 200,000 in
//! one request are charged at the higher rate. A missing cache-read rate is a tenth of the input
//! rate and a missing cache-write rate 1.25 times it (Anthropic's ratios).

use agentd_wire::Usage;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

/// Tokens of one field beyond this, in one request, are charged at the `above_200k` rate.
const TIER_TOKENS: u64 = 200_000;
/// Model names whose match is remembered. A user's history names a few dozen models; the bound
/// keeps a stream of made-up names from growing the memory (those are matched every time).
const REMEMBERED_MODELS: usize = 512;

/// Rates of one model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    #[serde(flatten)]
    pub base: Rates,
    #[serde(default)]
    pub above_200k: Option<Rates>,
}

/// Why a price file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error("cannot read the price file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the price file {path} is not a JSON object of model prices: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// Model prices, looked up by model name.
#[derive(Debug)]
pub struct Prices {
    /// Longest key first, so that the first contained key is the most specific.
    entries: Vec<(String, Price)>,
    /// Each key with its dots as dashes (`gpt-5.1` → `gpt-5-1`), as model names are normalised,
    /// in the order of `entries`.
    dashed: Vec<String>,
    /// Model names already matched → the index of their entry: every response of a backfill is
    /// priced, and matching a name is a scan of the whole table. hashbrown's default hasher, not
    /// SipHash (hashing was most of a lookup): the map holds at most [`REMEMBERED_MODELS`]
    /// names, so names chosen to collide cannot make it slow.
    matched: RwLock<hashbrown::HashMap<Box<str>, Option<usize>>>,
}

impl Clone for Prices {
    fn clone(&self) -> Prices {
        Prices::from_entries(self.entries.clone())
    }
}

impl Prices {
    /// The table shipped with the binary.
    pub fn builtin() -> Prices {
        Prices::from_json(include_str!("../data/prices.json"))
            .unwrap_or_else(|_| Prices::from_entries(Vec::new()))
    }

    /// The built-in table with the entries of `path` added or replacing.
    pub fn with_overrides(path: &Path) -> Result<Prices, PricesError> {
        // A price table is a few KiB; 16 MiB is a bound, not an expectation.
        let text = crate::fsread::read_text(path, crate::fsread::Trust::Named, 16 << 20).map_err(
            |source| PricesError::Read {
                path: path.display().to_string(),
                source,
            },
        )?;
        let extra = Prices::from_json(&text).map_err(|source| PricesError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        let mut map: HashMap<String, Price> = Prices::builtin().entries.into_iter().collect();
        map.extend(extra.entries);
        Ok(Prices::from_map(map))
    }

    fn from_json(text: &str) -> Result<Prices, serde_json::Error> {
        let raw: HashMap<String, serde_json::Value> = serde_json::from_str(text)?;
        let mut map = HashMap::new();
        for (key, value) in raw {
            if key.starts_with('_') {
                continue; // comments
            }
            map.insert(key.to_ascii_lowercase(), serde_json::from_value(value)?);
        }
        Ok(Prices::from_map(map))
    }

    fn from_map(map: HashMap<String, Price>) -> Prices {
        let mut entries: Vec<(String, Price)> = map.into_iter().collect();
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Prices::from_entries(entries)
    }

    fn from_entries(entries: Vec<(String, Price)>) -> Prices {
        Prices {
            dashed: entries.iter().map(|(k, _)| k.replace('.', "-")).collect(),
            entries,
            matched: RwLock::default(),
        }
    }

    /// The price of `model`, if the table knows it.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        // A poisoned lock only means another thread panicked mid-insert: the map is still valid.
        let seen = self
            .matched
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
            .copied();
        let index = seen.unwrap_or_else(|| {
            let index = self.match_name(model);
            let mut matched = self.matched.write().unwrap_or_else(|e| e.into_inner());
            if matched.len() < REMEMBERED_MODELS {
                matched.insert(model.into(), index);
            }
            index
        });
        index.map(|i| &self.entries[i].1)
    }

    /// The index of the entry `model` matches: its longest key contained in the name.
    fn match_name(&self, model: &str) -> Option<usize> {
        let name = model.to_ascii_lowercase();
        let name = name
            .rsplit('/')
            .next()
            .unwrap_or(&name)
            .replace(['.', '@'], "-");
        (0..self.entries.len())
            .find(|&i| name.contains(self.entries[i].0.as_str()) || name.contains(&self.dashed[i]))
    }

    /// The cost of one request's usage on `model`; `None` when the model is unknown.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let price = self.lookup(model)?;
        let b = &price.base;
        let high = price.above_200k.as_ref();
        let tiered = |tokens: u64, rate: f64, high_rate: Option<f64>| -> f64 {
            match high_rate {
                Some(h) if tokens > TIER_TOKENS => {
                    TIER_TOKENS as f64 * rate + (tokens - TIER_TOKENS) as f64 * h
                }
                _ => tokens as f64 * rate,
            }
        };
        let read = |r: &Rates| r.cache_read.unwrap_or(r.input * 0.1);
        let write = |r: &Rates| r.cache_write.unwrap_or(r.input * 1.25);
        let micro = tiered(usage.input_tokens, b.input, high.map(|h| h.input))
            + tiered(usage.output_tokens, b.output, high.map(|h| h.output))
            + tiered(usage.cache_read_tokens, read(b), high.map(read))
            + tiered(usage.cache_write_tokens, write(b), high.map(write));
        Some(micro / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, read: u64, write: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }

    #[test]
    fn models_match_their_most_specific_key() {
        let p = Prices::builtin();
        for (model, input_rate) in [
            ("claude-sonnet-4-5-20250929", Some(3.0)),
            ("claude-opus-4-5-20251101", Some(5.0)),
            ("claude-opus-4-1-20250805", Some(15.0)),
            ("claude-haiku-4-5-20251001", Some(1.0)),
            ("gpt-5-codex", Some(1.25)),
            ("gpt-5.1-codex-mini", Some(0.25)),
            ("gpt-5-mini-2025-08-07", Some(0.25)),
            ("google/gemini-2.5-flash", Some(0.3)),
            ("gemini-2.5-flash-lite", Some(0.1)),
            ("<synthetic>", None),
            ("llama-3-70b", None),
        ] {
            // The second lookup is answered from the remembered matches.
            for round in 0..2 {
                assert_eq!(
                    p.lookup(model).map(|x| x.base.input),
                    input_rate,
                    "{model}, lookup {round}"
                );
            }
        }
        // Past the names remembered, names are still matched (every time).
        for i in 0..REMEMBERED_MODELS + 10 {
            assert_eq!(p.lookup(&format!("made-up-{i}")), None);
        }
        assert_eq!(
            p.lookup("claude-haiku-4-5-x").map(|x| x.base.input),
            Some(1.0)
        );
        assert_eq!(p.matched.read().unwrap().len(), REMEMBERED_MODELS);
    }

    #[test]
    fn cost_per_field_with_long_context_tier() {
        let p = Prices::builtin();
        let c = p
            .cost("claude-sonnet-4-5", &usage(1000, 2000, 10_000, 4000))
            .unwrap();
        // 1000*3 + 2000*15 + 10000*0.3 + 4000*3.75 = 51000 micro-dollars
        assert!((c - 0.051).abs() < 1e-12, "{c}");
        let c = p
            .cost("claude-sonnet-4-5", &usage(0, 0, 300_000, 0))
            .unwrap();
        // 200k at 0.3 and 100k at 0.6
        assert!((c - 0.12).abs() < 1e-12, "{c}");
        // gpt-5: no cache-write rate given, none used; cache read at its own rate.
        let c = p.cost("gpt-5", &usage(1_000_000, 0, 1_000_000, 0)).unwrap();
        assert!((c - 1.375).abs() < 1e-12, "{c}");
        assert_eq!(p.cost("unknown-model", &usage(1, 1, 1, 1)), None);
    }

    #[test]
    fn an_override_file_adds_and_replaces_entries() {
        let dir = std::env::temp_dir().join(format!("agentd-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prices.json");
        std::fs::write(
            &file,
            r#"{"my-local-model": {"input": 0, "output": 0}, "gpt-5": {"input": 2, "output": 20}}"#,
        )
        .unwrap();
        let p = Prices::with_overrides(&file).unwrap();
        assert_eq!(p.cost("my-local-model", &usage(5, 5, 0, 0)), Some(0.0));
        assert_eq!(p.lookup("gpt-5").unwrap().base.input, 2.0);
        assert_eq!(p.lookup("claude-opus-4-5").unwrap().base.input, 5.0);
        std::fs::write(&file, "[1,2]").unwrap();
        let err = Prices::with_overrides(&file).unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
