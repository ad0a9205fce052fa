"""Local networks of real member nodes on loopback: the devnet launcher (:mod:`tools.devnet.network`) and the
end-to-end demo of ``make demo`` (:mod:`tools.devnet.demo`)."""
