class ConformanceTests: pass
class RunStore: pass
def normalize_documents(d): pass
