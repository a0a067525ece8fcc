# METADATA
# title: Predicted data classification of a read
# description: |
#   Predicts the classification level (PUBLIC < INTERNAL < CONFIDENTIAL < RESTRICTED) and
#   labels (PII, FINANCIAL, SECRET, ...) of the data an action reads, before it runs, from
#   layers.config.classification: tables named by the action (a parameter, or the
#   tables its parsed SQL reads and targets: input.analysis), path rules (matched on the
#   path as given and as it resolves), a per-tool floor and the tenant-wide classification of the artifacts the
#   action names (input.session.artifact_classification). The highest candidate wins.
#   A read that nothing classifies is predicted at the configured unclassified level
#   (RESTRICTED: AARM R2, default to the highest sensitivity). main copies the result
#   into the decision document as data_classification and data_labels, and the service
#   records it in the session. Also provides the level scale the other packages compare with.
# related_resources:
#   - ref: docs/policies/classification.md
#     description: classification policy page
# schemas:
#   - input: schema.input
package aarm.classification

import data.aarm.layers

import data.aarm.analysis
import data.aarm.catalogue

_cfg := layers.config.classification

_name := input.action.name

_params := input.action.parameters

_index := {name: i | some i, name in _cfg.levels}

# METADATA
# title: level
# description: |
#   Index of a level name on the scale (PUBLIC = 0). "NONE", "" and non-strings are -1
#   (nothing known); any other unknown name counts as the top level (fail secure).
level(name) := i if i := _index[name]

else := -1 if _unset(name)

else := count(_cfg.levels) - 1

# METADATA
# title: name
# description: The level name at an index of the scale; "NONE" below it.
name(index) := n if n := _cfg.levels[index]

else := "NONE"

_unset(name) if not is_string(name)

_unset(name) if name in {"", "NONE"}

# METADATA
# title: applies
# description: True for actions that read data (category read, or reads_data in the catalogue).
applies if catalogue.category == "read"

applies if catalogue.entry.reads_data == true

# METADATA
# title: candidates
# description: Every classification the action's target matches ({level, labels?} objects).
candidates contains _table_spec(table) if {
	param := _cfg.table_params[_name]
	table := _params[param]
	is_string(table)
}

candidates contains _table_spec(table) if {
	param := _cfg.sql_params[_name]
	some table in _sql_tables(analysis.facts[param])
}

# SQL that did not reach policy parsed names nothing we can classify: unclassified.
candidates contains {"level": _cfg.unclassified} if {
	param := _cfg.sql_params[_name]
	analysis.given(param)
	not _parsed(param)
}

candidates contains rule if {
	param := _cfg.path_params[_name]
	some path in _path_readings(param)
	some rule in _cfg.paths
	regex.match(rule.pattern, path)
}

candidates contains _cfg.tools[_name]

# The floor the catalogue declares for what the tool returns.
candidates contains floor if {
	floor := catalogue.entry.data_classification
	is_string(floor.level)
}

# Parameters the catalogue declares as SQL or paths are classified like the
# configured ones: by the tables a statement reads and by the path rules.
candidates contains _table_spec(table) if {
	some param, spec in object.get(catalogue.entry, "parameters", {})
	spec.semantic == "sql"
	some table in _sql_tables(analysis.facts[param])
}

candidates contains rule if {
	some param, spec in object.get(catalogue.entry, "parameters", {})
	spec.semantic == "path"
	some path in _path_readings(param)
	some rule in _cfg.paths
	regex.match(rule.pattern, path)
}

candidates contains {"level": artifact} if {
	artifact := input.session.artifact_classification
	level(artifact) >= 0
}

_sql_tables(f) := {t.name | some t in f.reads; t.object == "table"} | {name | some name in f.tables}

_parsed(param) if analysis.facts[param].parsed == true

# The path as given, and, when analysed, as it resolves and percent-decodes.
_path_readings(param) := {path | path := _params[param]; is_string(path)} | {reading |
	some f in analysis.values(param)
	some reading in [f.normalized, object.get(f, "decoded", null)]
	is_string(reading)
}

# A table the config does not know is unclassified: it counts at the unclassified level.
_table_spec(table) := spec if {
	parts := split(lower(trim(table, "\"`")), ".")
	spec := _cfg.tables[parts[count(parts) - 1]]
} else := {"level": _cfg.unclassified}

# METADATA
# title: predicted_level
# description: Index of the highest candidate level, or of the unclassified level when none matched.
predicted_level := max({level(c.level) | some c in candidates}) if count(candidates) > 0

else := level(_cfg.unclassified)

# METADATA
# title: data_classification
# description: The predicted level's name, for actions that read data; undefined otherwise.
data_classification := name(predicted_level) if applies

# METADATA
# title: data_labels
# description: The sorted labels of every candidate, for actions that read data.
data_labels := sort({label | some c in candidates; some label in object.get(c, "labels", [])}) if applies

# METADATA
# title: errors
# description: Problems in the classification config. Tests require this set to be empty.
errors contains sprintf("classification: unknown level %v in %v", [spec.level, spec]) if {
	some spec in _specs
	not _known_level(spec)
}

errors contains sprintf("classification: invalid regex %v", [rule.pattern]) if {
	some rule in _cfg.paths
	not regex.is_valid(rule.pattern)
}

errors contains sprintf("classification: unknown tool %v", [tool]) if {
	some table in [_cfg.table_params, _cfg.sql_params, _cfg.path_params, _cfg.tools]
	some tool, _ in table
	not layers.tools[tool]
}

_specs contains spec if some spec in _cfg.tables

_specs contains spec if some spec in _cfg.paths

_specs contains spec if some spec in _cfg.tools

_specs contains {"level": _cfg.unclassified}

_known_level(spec) if spec.level in _cfg.levels
