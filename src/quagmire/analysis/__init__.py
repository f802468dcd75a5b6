"""The analysis stages (rules/analysis.smk, rules/paper.smk): metrics + losses ─> tidy table ─> predictors ─>
figures; every study's predictors ─> the paper's tables and cross-model figure.

Modules: `tables` (the tidy and recipes tables), `predictors` (predictor values, fits, R², rank correlations),
`plots` (the study's figures), `paper` (Tables 1-4 and the cross-model figure).
"""
