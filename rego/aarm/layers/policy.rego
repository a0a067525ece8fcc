# METADATA
# title: Policy layers
# description: |
#   Merges the operator's overlays into the reference pack. An overlay is its own OPA
#   bundle rooted at aarm/overlays/<name>: its tools at
#   data.aarm.overlays.<name>.catalogue.tools, a partial config at
#   data.aarm.overlays.<name>.config (merged over data.aarm.config, objects recursively,
#   anything else replaced), and optional rules in package aarm.overlays.<name>.rules
#   (deny_reasons and stepup_findings, collected by aarm.main). Overlays apply in
#   sorted name order: a later overlay's tool entry replaces an earlier one of the same
#   name. Every package reads the catalogue and config through the rules here.
# related_resources:
#   - ref: docs/policies/layers.md
#     description: layers policy page
# schemas:
#   - input: schema.input
package aarm.layers

# METADATA
# title: overlay_names
# description: The names of the loaded overlays, in the order they apply.
overlay_names := sort([name | some name, _ in data.aarm.overlays])

# METADATA
# title: tools
# description: The merged tool catalogue, keyed "tool.operation".
tools := data.aarm.catalogue.tools if {
	count(_overlay_tools) == 0
} else := object.union(object.remove(data.aarm.catalogue.tools, object.keys(_overlay_tools)), _overlay_tools)

# Overlay tools; where two overlays define a name, the later one in overlay_names wins.
_overlay_tools[name] := tool if {
	some name
	_defined_by[name]
	tool := data.aarm.overlays[_last_layer(name)].catalogue.tools[name]
}

_defined_by[name] contains layer if {
	some layer in overlay_names
	some name, _ in data.aarm.overlays[layer].catalogue.tools
}

_last_layer(name) := max(_defined_by[name])

# METADATA
# title: tool
# description: |
#   The merged catalogue entry for one tool name (undefined when no layer has it):
#   a direct lookup, so a decision never builds the whole merged catalogue.
tool(name) := entry if {
	entry := data.aarm.overlays[_last_layer(name)].catalogue.tools[name]
} else := data.aarm.catalogue.tools[name]

# METADATA
# title: config
# description: The reference config with every overlay's config merged over it, in overlay order.
config := data.aarm.config if {
	count(_patches) == 0
} else := _merge_all(data.aarm.config, _patches)

_patches := [patch | some layer in overlay_names; patch := data.aarm.overlays[layer].config]

# object.union merges objects recursively and lets the right side win elsewhere; the
# patches are applied left to right.
_merge_all(base, patches) := object.union_n(array.concat([base], patches))

# METADATA
# title: deny_reasons
# description: The DENY reasons of every overlay's rules package.
deny_reasons contains reason if {
	some layer in overlay_names
	some reason in data.aarm.overlays[layer].rules.deny_reasons
}

# METADATA
# title: stepup_findings
# description: The STEP_UP findings ({group, reason}) of every overlay's rules package.
stepup_findings contains finding if {
	some layer in overlay_names
	some finding in data.aarm.overlays[layer].rules.stepup_findings
}
