if config["base_model"]["source"] == "hub":

    rule base_model:
        """The pre-trained base model (pinned hub snapshot or local copy), checked, with its tokenizer and lineage."""
        output:
            model=directory(f"{R}/models/base"),
            tokenizer=directory(f"{R}/models/tokenizer"),
        params:
            settings=as_json({k: v for k, v in config["base_model"].items() if k in ("hub_id", "revision", "path")}),
        log:
            f"{LOGS}/models/base_model.log",
        conda:
            "../envs/train.yaml"
        resources:
            **job_resources("train"),
        shell:
            "quagmire base-model --settings {params.settings:q} --out {output.model} "
            "--tokenizer-out {output.tokenizer} > {log} 2>&1"

else:

    include: "models_embedded.smk"
