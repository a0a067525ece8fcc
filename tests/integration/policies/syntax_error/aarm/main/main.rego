package aarm.main

decision := {"decision": "ALLOW" if {
