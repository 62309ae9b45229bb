# Fails when a file of the core (lib/core/) names anything of a backend:
# the core reaches executors only through the table in pe_backend.h
# (doc/ARCHITECTURE.md, "Executors behind one door").
file(GLOB core_files ${CORE}/*.c ${CORE}/*.h)
set(forbidden "pe__py_|PE__PY_|pe_py\\.h|pe_python_|Policyexec__|POLICYEXEC__|\\.pb-c\\.h|grpc")
set(bad "")
foreach(f ${core_files})
  file(STRINGS ${f} lines REGEX "${forbidden}")
  foreach(l ${lines})
    get_filename_component(name ${f} NAME)
    list(APPEND bad "${name}: ${l}")
  endforeach()
endforeach()
if(bad)
  list(JOIN bad "\n  " shown)
  message(FATAL_ERROR "lib/core names a backend (use pe__backend_ops):\n  ${shown}")
endif()
list(LENGTH core_files n)
message(STATUS "core_seam: ${n} core files name no backend")
