//! The `llm:` shorthand: one bind whose models pick their provider by the request's model.

use super::*;

/// `llm.models[i]`: provider, endpoint (`baseUrl` or `hostOverride`), key and transformation.
fn compile_model(
    cx: &mut Ctx,
    i: usize,
    m: &RawLlmModel,
    shared_guard: Option<&Arc<crate::guard::PromptGuard>>,
) -> Option<ModelEntry> {
    let path = format!("llm.models[{i}]");
    let prompt_guard = match &m.guardrails {
        Some(g) => cx.prompt_guard(g, &format!("{path}.guardrails")),
        None => shared_guard.cloned(),
    };
    let provider = match m.provider.as_str() {
        "openAI" | "openai" => Provider::OpenAi,
        "anthropic" => Provider::Anthropic,
        "gemini" => Provider::Gemini,
        "bedrock" => {
            let Some(region) = m.params.aws_region.as_deref() else {
                cx.err(
                    format!("{path}.params.awsRegion"),
                    "required for provider bedrock",
                );
                return None;
            };
            let raw = RawBedrock::default();
            super::cloud::bedrock(cx, region, &raw, &format!("{path}.params.awsRegion"))?
        }
        "vertex" => {
            let Some(project) = m.params.vertex_project.as_deref() else {
                cx.err(
                    format!("{path}.params.vertexProject"),
                    "required for provider vertex",
                );
                return None;
            };
            let region = m.params.vertex_region.as_deref().unwrap_or("global");
            super::cloud::vertex(cx, project, region, &format!("{path}.params"))?
        }
        "azure" | "azureOpenAI" => azure(
            m.params.azure_resource_name.clone(),
            m.params.azure_resource_type.as_deref(),
            m.params.azure_api_version.clone(),
            m.params.azure_project_name.clone(),
        ),
        other => match find_preset(other) {
            Some(p) => Provider::Compatible(p),
            None => {
                cx.err(
                    format!("{path}.provider"),
                    format!("unknown provider {other:?}"),
                );
                return None;
            }
        },
    };
    let (host, port, tls) = provider.default_endpoint();
    let mut path_prefix = m.params.path_prefix.clone();
    let target = if let Some(url) = &m.params.base_url {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        if let Some((_, p)) = rest.split_once('/') {
            let p = format!("/{}", p.trim_end_matches('/'));
            if p != "/" {
                path_prefix = Some(p);
            }
        }
        url.clone()
    } else {
        m.params
            .host_override
            .clone()
            .unwrap_or_else(|| format!("{host}:{port}"))
    };
    let overridden = m.params.base_url.is_some() || m.params.host_override.is_some();
    let up = upstream(
        cx,
        &target,
        Some((port, tls && !overridden)),
        None,
        &format!("{path}.params"),
    )?;
    let api_key = m
        .params
        .api_key
        .as_ref()
        .and_then(|k| secret(cx, k, &format!("{path}.params.apiKey")));
    let strip = m.transformation.as_ref().and_then(|t| t.get("model")).and_then(|expr| {
        let e = expr.trim();
        e.strip_prefix("llmRequest.model.stripPrefix(\"")
            .and_then(|r| r.strip_suffix("\")"))
            .map(str::to_owned)
            .or_else(|| {
                cx.err(format!("{path}.transformation.model"), format!("unsupported transformation {e:?} (only llmRequest.model.stripPrefix(\"...\") is supported)"));
                None
            })
    });
    let health_policy =
        match crate::llm::route::config::health(m.health.as_ref(), &format!("{path}.health")) {
            Ok(h) => Arc::new(h),
            Err((at, msg)) => {
                cx.err(at, msg);
                return None;
            }
        };
    let cloud = if api_key.is_some() {
        None
    } else {
        super::cloud::implicit(&provider)
    };
    Some(ModelEntry {
        pattern: m.name.clone(),
        internal: m.visibility == Some(RawVisibility::Internal),
        backend: Arc::new(AiBackend {
            name: m.name.clone(),
            provider,
            upstream: up,
            model_override: m.params.model.clone(),
            path_override: m.params.path_override.clone(),
            path_prefix,
            cloud,
            api_key,
            defaults: m.defaults.clone().unwrap_or_default(),
            overrides: m.overrides.clone().unwrap_or_default(),
            strip_model_prefix: strip,
            prompt_guard,
            health_policy,
            health: Default::default(),
        }),
    })
}

/// agentgateway's `LocalLLMPolicy` keys this gateway does not implement yet.
const LLM_POLICIES_NOT_YET: &[&str] = &[
    "oidc",
    "extAuthz",
    "extProc",
    "cors",
    "transformations",
    "remoteRateLimit",
];

/// `llm.virtualModels`: each target resolved against the models (as a client's model is); a
/// virtual model's name may not also be a model's.
fn compile_virtual_models(cx: &mut Ctx, llm: &RawLlm, table: &mut ModelTable) {
    for (i, raw) in llm.virtual_models.iter().enumerate() {
        let path = format!("llm.virtualModels[{i}]");
        if table.virtual_models.iter().any(|v| v.name == raw.name) {
            cx.err(
                format!("{path}.name"),
                format!("{:?} is already a virtual model", raw.name),
            );
            continue;
        }
        if let Some(m) = table.entries.iter().find(|m| m.pattern == raw.name) {
            cx.err(
                format!("{path}.name"),
                format!(
                    "{:?} is also the name of a model in llm.models (use a name of its own)",
                    m.pattern
                ),
            );
            continue;
        }
        match crate::llm::route::config::virtual_model(raw, &path, |m| table.resolve(m)) {
            Ok(v) => table.virtual_models.push(v),
            Err((at, msg)) => cx.err(at, msg),
        }
    }
}

pub(super) fn compile_llm(cx: &mut Ctx, llm: &RawLlm) -> Option<Bind> {
    let mut shared_guard = None;
    let mut policies = Policies::default();
    if let Some(p) = &llm.policies {
        // Identity and limits: the route policies of the same names, on the model router.
        let raw = RawPolicies {
            api_key: p.api_key.clone(),
            jwt_auth: p.jwt_auth.clone(),
            basic_auth: p.basic_auth.clone(),
            authorization: p.authorization.clone(),
            local_rate_limit: p.local_rate_limit.clone(),
            global_rate_limit: p.global_rate_limit.clone(),
            budgets: p.budgets.clone(),
            retry: p.retry.clone(),
            timeout: p.timeout.clone(),
            ..RawPolicies::default()
        };
        policies = compile_policies(cx, Some(&raw), "llm.policies", &Policies::default());
        for key in p.unsupported.keys() {
            let msg = if LLM_POLICIES_NOT_YET.contains(&key.as_str()) {
                format!(
                    "{key} is not supported by this gateway yet; remove it (it would otherwise be ignored)"
                )
            } else {
                format!(
                    "unknown field `{key}` (supported: guardrails, apiKey, jwtAuth, basicAuth, \
                     authorization, localRateLimit, globalRateLimit, budgets, retry, timeout)"
                )
            };
            cx.err(format!("llm.policies.{key}"), msg);
        }
        if let Some(g) = &p.guardrails {
            shared_guard = cx.prompt_guard(g, "llm.policies.guardrails");
        }
    }
    let mut table = ModelTable::default();
    for (i, m) in llm.models.iter().enumerate() {
        if let Some(entry) = compile_model(cx, i, m, shared_guard.as_ref()) {
            table.entries.push(entry);
        }
    }
    if table.entries.len() == llm.models.len() {
        compile_virtual_models(cx, llm, &mut table);
    }
    let port = llm.port.unwrap_or(DEFAULT_LLM_PORT);
    let route = Route {
        name: "llm".into(),
        hostnames: Vec::new(),
        matches: vec![Match {
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }],
        backends: vec![Backend {
            weight: 1,
            kind: BackendKind::Models(Arc::new(table)),
            policies,
        }],
        policies: Policies::default(),
    };
    Some(Bind {
        port,
        address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        listeners: vec![Listener {
            name: "llm".into(),
            hostname: None,
            tls: None,
            routes: vec![Arc::new(route)],
        }],
        name: format!("bind/{port}"),
    })
}
