package aarm.layers_test

import data.aarm.layers

_site := {"site": {
	"catalogue": {"tools": {"crm2.lookup": {"category": "read", "risk_tier": "low", "output_trust": "trusted", "parameters": {}}}},
	"config": {"egress": {"internal_domains": ["site.example"]}},
	"rules": {"deny_reasons": {{"code": "site_rule", "rule_id": "site.rule", "message": "m"}}},
}}

test_no_overlay_is_the_reference_pack if {
	layers.tools == data.aarm.catalogue.tools with data.aarm.overlays as {}
	layers.config == data.aarm.config with data.aarm.overlays as {}
	layers.overlay_names == [] with data.aarm.overlays as {}
}

test_overlay_tools_config_and_rules_merge if {
	layers.tool("crm2.lookup").category == "read" with data.aarm.overlays as _site
	layers.tools["crm2.lookup"].risk_tier == "low" with data.aarm.overlays as _site
	layers.config.egress.internal_domains == ["site.example"] with data.aarm.overlays as _site
	layers.config.default_posture == data.aarm.config.default_posture with data.aarm.overlays as _site
	{r.rule_id | some r in layers.deny_reasons} == {"site.rule"} with data.aarm.overlays as _site
}

test_later_overlay_wins if {
	two := object.union(_site, {"zz": {"catalogue": {"tools": {"crm2.lookup": {"category": "write", "risk_tier": "high", "output_trust": "trusted", "parameters": {}}}}}})
	layers.tool("crm2.lookup").category == "write" with data.aarm.overlays as two
	layers.overlay_names == ["site", "zz"] with data.aarm.overlays as two
}

test_overlay_entry_replaces_the_pack_entry_whole if {
	some name, _ in data.aarm.catalogue.tools
	replaced := {"site": {"catalogue": {"tools": {name: {"category": "read", "risk_tier": "low", "output_trust": "trusted", "parameters": {}}}}}}
	layers.tools[name].parameters == {} with data.aarm.overlays as replaced
	layers.tool(name).parameters == {} with data.aarm.overlays as replaced
}
