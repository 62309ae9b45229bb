module policyexec

go 1.19
