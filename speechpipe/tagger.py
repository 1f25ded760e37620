"""Phase and act tagger (placeholder until issue 5): tags nothing yet."""


class _NoTagger:
    name = None

    def tag_call(self, utterances):
        return {}


def load_tagger():
    return _NoTagger()
