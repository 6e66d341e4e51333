"""``kubectl promotion dashboard``: a web page of ModelPromotions, live, on 127.0.0.1.

An outer layer of the plugin: it acts with the user's kubeconfig through the
plugin's own API calls (:mod:`..kube`, :mod:`..operations`). The page is built on
the server (:mod:`.pages`, :mod:`.plot`: pure functions); :mod:`.feed` keeps a
watch open and :mod:`.serve` pushes each change to the open pages.
"""
