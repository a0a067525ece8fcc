# METADATA
# title: Egress (where an action sends, decided on the host a client contacts)
# description: |
#   The destinations of an action, from input.analysis (never from the raw strings):
#   every e-mail address or URL of a parameter with a catalogue egress spec, and every
#   URL a shell command fetches. A URL's host is the one a WHATWG client (browsers,
#   Node, curl's URL API) contacts (ada-url), ASCII and lower case; an address's domain
#   is its IDNA-mapped delivery domain (email-validator). Domains match a listed domain
#   or a subdomain of it, label by label. Tier 2 DENY, code parameter_blocked: a
#   destination on the block list, off the allow list (for parameters in allowlist
#   mode), that looks like a listed domain without being it (confusable skeleton), or a
#   URL whose host is an IP address that is not globally routable (loopback, private,
#   link-local: cloud metadata). Also tells aarm.composition which destinations are
#   internal.
# related_resources:
#   - ref: docs/policies/egress.md
#     description: egress policy page
# schemas:
#   - input: schema.input
package aarm.egress

import data.aarm.layers

import data.aarm.analysis
import data.aarm.catalogue
import data.aarm.explain

_cfg := layers.config.egress

_name := input.action.name

# METADATA
# title: destinations
# description: |
#   One {param, kind, mode, source, value, host, skeleton, ip} per destination:
#   source "parameter" for an egress parameter (kind email or url, mode allowlist or
#   blocklist, as its spec says), "shell" for a URL in a shell command (blocklist).
#   host is null when the value did not parse (for an e-mail address the text after
#   its last @ is still offered to the block list).
destinations contains _destination(param, spec.egress, "parameter", _text(param, i, f), f) if {
	some param, spec in catalogue.entry.parameters
	spec.egress.kind
	some i, f in analysis.values(param)
}

destinations contains _destination(s.param, {"kind": "url", "mode": "blocklist"}, "shell", object.get(u, "href", "?"), u) if {
	some s in analysis.shell
	some u in s.facts.urls
}

_destination(param, egress, source, text, f) := {
	"param": param,
	"kind": egress.kind,
	"mode": egress.mode,
	"source": source,
	"value": text,
	"host": _host(egress.kind, f),
	"skeleton": _skeleton(egress.kind, f),
	"ip": object.get(f, "ip", null),
}

_host("url", f) := object.get(f, "host", null)

_host("email", f) := f.ascii_domain if f.parsed == true

else := object.get(f, "fallback_domain", null)

_skeleton("url", f) := object.get(f, "skeleton", null)

_skeleton("email", f) := f.skeleton if f.parsed == true

else := object.get(f, "fallback_skeleton", null)

# The raw value a facts document was made from (for messages).
_text(param, i, _) := input.action.parameters[param][i] if is_array(input.action.parameters[param])

else := input.action.parameters[param]

# METADATA
# title: matches
# description: True when host equals a listed domain or is a subdomain of one (label-wise, case-insensitive).
matches(host, domains) if {
	is_string(host)
	some listed in domains
	_label_match(host, lower(listed))
}

_label_match(host, listed) if host == listed

# A subdomain: the host's last labels are the listed domain's labels.
_label_match(host, listed) if {
	labels := split(host, ".")
	suffix := split(listed, ".")
	count(labels) > count(suffix)
	array.slice(labels, count(labels) - count(suffix), count(labels)) == suffix
}

# METADATA
# title: internal
# description: True for a destination whose host is an internal domain.
internal(d) if matches(d.host, internal_domains)

# METADATA
# title: internal_domains
# description: |
#   The organisation's domains: the configured ones, the tenant's own
#   (egress.tenant_internal_domains[<tenant>]) and the human principal's own domain
#   (the part of input.identity.human after its @, when it has one).
internal_domains := array.concat(array.concat(_cfg.internal_domains, _tenant_domains), _human_domain)

# Per-tenant organisation domains: egress.tenant_internal_domains[<tenant>].
_tenant_domains := domains if {
	domains := _cfg.tenant_internal_domains[input.identity.tenant]
} else := []

_human_domain := [lower(parts[1])] if {
	parts := split(input.identity.human, "@")
	count(parts) == 2
	parts[1] != ""
} else := []

_allowed(d) if matches(d.host, array.concat(internal_domains, _cfg.allowed_domains))

_listed := array.concat(array.concat(internal_domains, _cfg.allowed_domains), _cfg.blocked_domains)

# METADATA
# title: user_directed
# description: |
#   True when every value of the parameter was named in the user's original request
#   (input.provenance): a URL counts when the request named its host.
user_directed(param) if {
	docs := [doc | some path, doc in input.provenance.parameters; regex.split(`[.\[]`, path)[0] == param]
	count(docs) > 0
	every doc in docs {
		_named_by_user(doc)
	}
}

# METADATA
# title: direct_injection
# description: |
#   The original request itself reads like an injection (T1 direct: "ignore previous
#   instructions..."; egress.direct_injection_pattern): it then vouches for nothing it
#   names (no destination, grant or delete is user-directed because it named it).
direct_injection if regex.match(_cfg.direct_injection_pattern, input.session.original_request.text)

_named_by_user(doc) if {
	not direct_injection
	doc.origins[_] == "user"
}

_named_by_user(doc) if {
	not direct_injection
	count(doc.found) > 0
	every item in doc.found {
		item.kind == "url"
		item.domain_origins[_] == "user"
	}
}

# The listed domains the skeleton reads as while the host itself is none of them.
_lookalikes(d) := {listed |
	some listed in _listed
	matches(d.skeleton, [listed])
	not matches(d.host, [listed])
}

# METADATA
# title: deny_reasons
# description: Tier 2 DENY reasons for destinations that may not be contacted.
# custom:
#   rule_id: aarm.egress.blocklist
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), d.param, null, explain.change("value", "a destination whose host is not on the egress block list"), sprintf(
	"%s parameter %q sends to %q, whose host %s is on the egress block list",
	[_name, d.param, d.value, d.host],
)) if {
	some d in destinations
	matches(d.host, _cfg.blocked_domains)
}

# METADATA
# custom:
#   rule_id: aarm.egress.allowlist
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), d.param, explain.of_param(d.param), explain.change("value", "a destination on an internal domain or the egress allow list, or one the user's request named"), sprintf(
	"%s parameter %q sends to %q, whose host %v is not internal or on the egress allow list",
	[_name, d.param, d.value, d.host],
)) if {
	some d in _not_allowed
	not user_directed(d.param)
}

_not_allowed contains d if {
	some d in destinations
	d.mode == "allowlist"
	not _allowed(d)
}

# METADATA
# custom:
#   rule_id: aarm.egress.lookalike
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), d.param, null, explain.change("value", sprintf("the real %s, not a host that looks like it", [listed])), sprintf(
	"%s parameter %q sends to %q, whose host %s looks like %s (confusable characters) without being it",
	[_name, d.param, d.value, d.host, listed],
)) if {
	some d in destinations
	some listed in _lookalikes(d)
}

# METADATA
# custom:
#   rule_id: aarm.egress.private_address
#   code: parameter_blocked
deny_reasons contains _reason(rego.metadata.rule(), d.param, explain.of_param(d.param), explain.change("value", "a globally routable destination (one the user's request named goes to a human instead)"), sprintf(
	"%s parameter %q reaches %q, the address %s, which is not globally routable (loopback, private, link-local, reserved: local services and cloud metadata)",
	[_name, d.param, d.value, d.ip.address],
)) if {
	some d in _non_global
	not user_directed(d.param)
}

_non_global contains d if {
	_cfg.block_non_global_addresses == true
	some d in destinations
	d.source == "parameter"
	d.kind == "url"
	d.ip.global == false
	not _allowed(d)
}

# METADATA
# title: stepup_findings
# description: |
#   A destination that is not globally routable but that the user's own request named:
#   a human confirms it instead of a DENY (STEP_UP, {group, reason}). A destination
#   outside the allow list that the request named is user-directed and passes.
# custom:
#   rule_id: aarm.egress.user_named_destination
#   code: parameter_blocked
stepup_findings contains {"group": _cfg.user_named_approver_group, "reason": _reason(rego.metadata.rule(), d.param, explain.of_param(d.param), explain.approval(_cfg.user_named_approver_group, "a globally routable destination"), sprintf(
	"%s parameter %q reaches %q, which is not globally routable, but the user's request named it; a human must confirm it",
	[_name, d.param, d.value],
))} if {
	some d in _non_global
	user_directed(d.param)
}

_reason(meta, param, provenance, would_change, message) := explain.reason(meta, message, param, provenance, would_change)
