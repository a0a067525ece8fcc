# METADATA
# title: Predicted data classification of a read
# description: |
#   Predicts the classification level (PUBLIC < INTERNAL < CONFIDENTIAL < RESTRICTED) and
#   labels (PII, FINANCIAL, SECRET, ...) of the data an action reads, before it runs, from
#   what the catalogue declares about the tool and layers.config.classification: tables
#   named by the action (a parameter declared "classify": "table", or the tables the
#   parsed SQL of a parameter of semantic type sql reads and targets: input.analysis),
#   path rules (matched on the value of a parameter of semantic type path as given and
#   as it resolves), the tool's own data_classification floor and the tenant-wide
#   classification of the artifacts the action names
#   (input.session.artifact_classification). The highest candidate wins.
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
# description: |
#   Every classification the action's target matches ({level, labels?} objects). A
#   parameter the catalogue declares "classify": "table" names the table it reads.
candidates contains _table_spec(table) if {
	some param, spec in catalogue.parameters
	spec.classify == "table"
	some table in _strings(_params[param])
}

# A parameter of semantic type sql: the tables its parsed statements read and target.
candidates contains _table_spec(table) if {
	some param in catalogue.parameters_of({"sql"})
	some table in _sql_tables(analysis.facts[param])
}

# SQL that did not reach policy parsed names nothing we can classify: unclassified.
candidates contains {"level": _cfg.unclassified} if {
	some param in catalogue.parameters_of({"sql"})
	analysis.given(param)
	not _parsed(param)
}

# A parameter of semantic type path: the path rules it matches.
candidates contains rule if {
	some param in catalogue.parameters_of({"path"})
	some path in _path_readings(param)
	some rule in _cfg.paths
	regex.match(rule.pattern, path)
}

# The floor the catalogue declares for what the tool returns.
candidates contains floor if {
	floor := catalogue.entry.data_classification
	is_string(floor.level)
}

candidates contains {"level": artifact} if {
	artifact := input.session.artifact_classification
	level(artifact) >= 0
}

_strings(value) := {value} if is_string(value)

else := {item | some item in value; is_string(item)} if is_array(value)

else := set()

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

errors contains sprintf("classification: %s declares data_classification with unknown level %v", [name, tool.data_classification.level]) if {
	some name, tool in layers.tools
	tool.data_classification
	not _known_level(tool.data_classification)
}

_specs contains spec if some spec in _cfg.tables

_specs contains spec if some spec in _cfg.paths

_specs contains {"level": _cfg.unclassified}

_known_level(spec) if spec.level in _cfg.levels
