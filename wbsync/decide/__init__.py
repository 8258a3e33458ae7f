"""Pure decisions: resolve aliases to versions, does the lock agree with the manifest, is a version
outdated or vanished, the plan of a sync. Below ``repo`` and ``tree``, above ``sources``.
"""
