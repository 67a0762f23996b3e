"""Chain-of-Causation reasoning: schema + vocabularies (``schema``), meta-actions from egomotion
(``meta_actions``), keyframes (``keyframes``), the privileged rule labeler and the released parquet
format (``labeler``), the LLM teacher for real data (``teacher``), CoC↔trajectory consistency and
reasoning quality (``consistency``), and the ``cordillera label`` hooks (``cli``)."""
