//! Built-in detectors for `regex` guards: agentgateway's five PII builtins (`ssn`, `creditCard`,
//! `phoneNumber`, `email`, `caSin`), credential-leak builtins, and `promptInjection`.
//!
//! Each builtin is one or more patterns plus an optional validator run on the matched text
//! (Luhn for card and SIN numbers, the SSA's allocation rules for SSNs), which cuts the false
//! positives a bare pattern has. Word boundaries (`\b`) are ASCII here and in custom patterns
//! (see `scan.rs`). The prompt-injection list is deliberately small and readable: it catches
//! the well-known phrasings, not paraphrases, other languages or encodings. A model-based
//! classifier belongs behind a `webhook` guard.

/// A matched text is kept only when its validator says so.
pub type Validator = fn(&str) -> bool;

/// One pattern of a builtin.
pub struct BuiltinPattern {
    pub regex: &'static str,
    /// For `promptInjection`: the family reported when this pattern matched.
    pub family: Option<&'static str>,
    pub validate: Option<Validator>,
}

/// A builtin detector, by its config name.
pub struct Builtin {
    /// The config spelling (`builtin: creditCard`), also the rule type reported in telemetry.
    pub name: &'static str,
    /// What a masked match is replaced with (agentgateway's spellings for its five).
    pub mask: &'static str,
    pub patterns: &'static [BuiltinPattern],
    /// One line for docs and `/config_dump`.
    pub about: &'static str,
}

const fn p(regex: &'static str) -> BuiltinPattern {
    BuiltinPattern {
        regex,
        family: None,
        validate: None,
    }
}

const fn v(regex: &'static str, validate: Validator) -> BuiltinPattern {
    BuiltinPattern {
        regex,
        family: None,
        validate: Some(validate),
    }
}

const fn f(family: &'static str, regex: &'static str) -> BuiltinPattern {
    BuiltinPattern {
        regex,
        family: Some(family),
        validate: None,
    }
}

pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "ssn",
        mask: "<SSN>",
        patterns: &[v(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", ssn_valid)],
        about: "U.S. Social Security number (AAA-GG-SSSS, SSA allocation rules checked)",
    },
    Builtin {
        name: "creditCard",
        mask: "<CREDIT_CARD>",
        patterns: &[v(r"\b[0-9](?:[ -]?[0-9]){12,18}\b", card_valid)],
        about: "payment card number, 13-19 digits with optional space/dash groups, Luhn-checked",
    },
    Builtin {
        name: "phoneNumber",
        mask: "<PHONE_NUMBER>",
        patterns: &[
            // North American layouts: (555) 123-4567, 555-123-4567, +1 555 123 4567,
            // 555.123.4567. Any digits: numbers people write as examples or test data
            // (555-123-4567, (123) 456-7890) break NANP's rules and are still phone numbers.
            p(r"(?:\+1[ .-]?)?(?:\([0-9]{3}\) ?|\b[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}\b"),
            // International with a leading +: +44 20 7946 0958, +49-30-123456.
            p(r"\+[1-9][0-9]{0,2}(?:[ .-]?[0-9]{1,4}){2,5}\b"),
        ],
        about: "phone number: North American formats, or international with a leading +",
    },
    Builtin {
        name: "email",
        mask: "<EMAIL_ADDRESS>",
        patterns: &[p(
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b",
        )],
        about: "email address",
    },
    Builtin {
        name: "caSin",
        mask: "<CA_SIN>",
        patterns: &[v(r"\b[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{3}\b", sin_valid)],
        about: "Canadian Social Insurance Number (9 digits, Luhn-checked)",
    },
    // --- Credential leaks: beyond agentgateway's builtins. ---
    Builtin {
        name: "awsAccessKey",
        mask: "<AWS_ACCESS_KEY>",
        patterns: &[p(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")],
        about: "AWS access key id (AKIA/ASIA...)",
    },
    Builtin {
        name: "githubToken",
        mask: "<GITHUB_TOKEN>",
        patterns: &[
            p(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),
            p(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
        ],
        about: "GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
    },
    Builtin {
        name: "gitlabToken",
        mask: "<GITLAB_TOKEN>",
        patterns: &[p(r"\bgl(?:pat|dt|rt|ptt|cbt|oas)-[A-Za-z0-9_-]{20,}")],
        about: "GitLab token (glpat-, gldt-, ...)",
    },
    Builtin {
        name: "slackToken",
        mask: "<SLACK_TOKEN>",
        patterns: &[p(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")],
        about: "Slack token (xoxb-, xoxp-, ...)",
    },
    Builtin {
        name: "anthropicApiKey",
        mask: "<ANTHROPIC_API_KEY>",
        patterns: &[p(r"\bsk-ant-[A-Za-z0-9_-]{20,}")],
        about: "Anthropic API key (sk-ant-...)",
    },
    Builtin {
        name: "openAIApiKey",
        mask: "<OPENAI_API_KEY>",
        patterns: &[
            p(r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}"),
            p(r"\bsk-[A-Za-z0-9]{32,}\b"),
        ],
        about: "OpenAI-style API key (sk-proj-..., sk-svcacct-..., legacy sk-...)",
    },
    Builtin {
        name: "googleApiKey",
        mask: "<GOOGLE_API_KEY>",
        patterns: &[p(r"\bAIza[0-9A-Za-z_-]{35}")],
        about: "Google API key (AIza...)",
    },
    Builtin {
        name: "privateKey",
        mask: "<PRIVATE_KEY>",
        patterns: &[p(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
        )],
        about: "PEM private key block (RSA, EC, OPENSSH, PKCS#8, encrypted)",
    },
    Builtin {
        name: "jwt",
        mask: "<JWT>",
        patterns: &[p(
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        )],
        about: "JSON Web Token (three base64url parts, header and claims starting eyJ)",
    },
    // --- Prompt injection: beyond agentgateway's builtins. ---
    Builtin {
        name: "promptInjection",
        mask: "<PROMPT_INJECTION>",
        patterns: &[
            f(
                "ignoreInstructions",
                r"(?i)\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:(?:all|any|every|each|the|your|my|these|those|of)\s+)*(?:previous|prior|above|earlier|preceding|former|original|initial|system|developer)\s+(?:instructions?|prompts?|rules?|directions?|guidelines?|messages?|context|commands?|constraints?)\b",
            ),
            f(
                "roleHijack",
                r"(?i)\b(?:you\s+are\s+now|from\s+now\s+on\s+you\s+are|act\s+as|pretend\s+(?:to\s+be|you\s+are)|roleplay\s+as)\s+(?:an?\s+|the\s+)?(?:DAN|unrestricted|unfiltered|uncensored|jailbroken|evil|developer\s+mode)\b",
            ),
            f(
                "roleHijack",
                r"(?i)\b(?:enable|enter|activate|switch\s+to)\s+(?:DAN|developer|god|jailbreak|unrestricted)\s+mode\b",
            ),
            f(
                "systemPromptExfiltration",
                r"(?i)\b(?:reveal|show|print|repeat|output|display|dump|leak|tell\s+me|what\s+(?:is|are|was|were))\s+(?:me\s+)?(?:your|the)\s+(?:(?:full|entire|exact|original|initial|hidden|secret|complete)\s+)*(?:system\s+prompt|system\s+message|initial\s+instructions|hidden\s+instructions|developer\s+message|instructions\s+above)\b",
            ),
            f(
                "specialTokens",
                r"<\|im_start\|>\s*system|<\|system\|>|\[/?INST\]|<<SYS>>|<\|begin_of_text\|>",
            ),
        ],
        about: "known prompt-injection phrasings: ignore previous instructions, role hijack (DAN, developer mode), system-prompt exfiltration, chat-template tokens",
    },
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Every builtin name, for error messages.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.chars().filter_map(|c| c.to_digit(10))
}

/// The Luhn checksum over the digits of `s`.
pub fn luhn(s: &str) -> bool {
    let ds: Vec<u32> = digits(s).collect();
    if ds.is_empty() {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// 13-19 digits, one separator style at most, Luhn-valid, not all one digit.
fn card_valid(s: &str) -> bool {
    let n = digits(s).count();
    if !(13..=19).contains(&n) {
        return false;
    }
    if s.contains(' ') && s.contains('-') {
        return false;
    }
    let first = s.chars().next();
    if s.chars()
        .filter(|c| c.is_ascii_digit())
        .all(|c| Some(c) == first)
    {
        return false;
    }
    luhn(s)
}

/// Nine digits, Luhn-valid, not all one digit.
fn sin_valid(s: &str) -> bool {
    let first = s.chars().next();
    !s.chars()
        .filter(|c| c.is_ascii_digit())
        .all(|c| Some(c) == first)
        && luhn(s)
}

/// The SSA never issues area 000, 666 or 9xx, group 00 or serial 0000.
fn ssn_valid(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_examples() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(card_valid("4111111111111111"));
        assert!(!card_valid("1111111111111111"), "one repeated digit");
        assert!(!card_valid("4111 1111-1111 1111"), "mixed separators");
        assert!(sin_valid("046 454 286"));
        assert!(!sin_valid("046 454 287"));
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_valid("123-45-6789"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(!ssn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn every_builtin_compiles() {
        for b in BUILTINS {
            for pat in b.patterns {
                regex::Regex::new(pat.regex).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            }
            assert!(
                b.mask.starts_with('<') && b.mask.ends_with('>'),
                "{}",
                b.name
            );
        }
    }
}
