"""Parel BYOM Instant: its import flow is Tessera's own `validate-hf` and `import-hf`; its
client reads the imported model's id as `parel_model_id`, which the import answer carries.
"""

from pydantic import Field

from serve_app.wire.schema import ImportedModel, ModelInfo


class ParelImportedModel(ImportedModel):
    parel_model_id: str = Field(description="the model's id, where Parel's client reads it")


def import_answer(info: ModelInfo) -> ParelImportedModel:
    return ParelImportedModel(**info.model_dump(), model_id=info.id, parel_model_id=info.id)
